//! The agent and the shell hand-off, end to end: the real AWS CLI with `credential_process`
//! against the embedded STS and moto_server, fifty concurrent callers sharing one ceremony,
//! `exec` and `env` in real shells, a foreign uid refused, bad sockets and messages, and no
//! secret left in files or in the agent's memory after `lock`.

use crate::common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use secrecy::ExposeSecret;
use serde_json::Value;

use breakglass::sandbox::sts::Sts;
use common::home::*;
use common::*;

const SLOT: u16 = 1;
const ROLE: &str = "BreakGlass";

/// The real AWS CLI from PATH (the CI venv); skips or fails like the pcscd check.
fn aws_cli(test: &str) -> Option<PathBuf> {
    tool(test, "aws", "pip install 'awscli<2'")
}

/// A command in `home`, detached from every terminal (`setsid -w`), so no prompt can wait.
fn detached(home: &Home, program: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("setsid");
    cmd.arg("-w").arg(program).args(args);
    home.env(&mut cmd);
    cmd
}

fn run(mut cmd: Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("run")
}

/// Writes an AWS CLI config whose profile `bg` uses breakglass as its credential_process.
fn aws_config(home: &Home, profile: &str) -> PathBuf {
    let path = home.dir.path().join("aws-config");
    std::fs::write(
        &path,
        format!("[profile bg]\ncredential_process = {BIN} credential-process {profile}\nregion = us-east-1\n"),
    )
    .unwrap();
    path
}

/// `aws sts get-caller-identity` through credential_process, detached from any terminal.
fn caller_identity(home: &Home, aws: &Path, endpoint: &str) -> Output {
    let mut cmd = detached(
        home,
        aws.to_str().unwrap(),
        &[
            "sts",
            "get-caller-identity",
            "--profile",
            "bg",
            "--endpoint-url",
            endpoint,
            "--output",
            "json",
        ],
    );
    cmd.env("AWS_CONFIG_FILE", aws_config(home, "prod"));
    run(cmd)
}

/// Returns once no process holds the agent's lock: the agent has exited (killed or stopped),
/// its socket closed with it. Panics after 20 s.
fn wait_until_agent_gone(home: &Home) {
    let path = home.runtime().join("agent.lock");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let free = std::fs::File::open(&path).map_or(true, |f| f.try_lock().is_ok());
        if free {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the agent still holds {} after 20 s",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn status(home: &Home) -> Value {
    let out = ok(run(home.command(&["status", "--json"])));
    serde_json::from_str(&out).unwrap()
}

/// Enrols `prod` on the soft token with an MFA device made at the emulator (no TOTP window
/// used, so the first unlock need not wait), with the role of the member account.
fn enrol_with_role(home: &Home, sts: &Sts, reader: &str) -> String {
    let (key_id, key_secret) = sts.create_access_key("breakglass");
    let (serial, seed) = sts.create_mfa_device("breakglass", "breakglass-token");
    let role_arn = sts.create_role(ROLE, true);
    let endpoint = sts.endpoint();
    enroll_imported(
        home,
        "prod",
        &endpoint,
        reader,
        &serial,
        (&key_id, key_secret.expose_secret(), &seed),
    );
    let mut config = std::fs::read_to_string(home.config_file()).unwrap();
    config += &format!("role_arn = \"{role_arn}\"\n");
    std::fs::write(home.config_file(), config).unwrap();
    key_secret.expose_secret().to_owned()
}

#[test]
fn fifty_callers_one_ceremony_then_the_aws_cli_exec_env_and_lock() {
    let test = "fifty_callers_one_ceremony_then_the_aws_cli_exec_env_and_lock";
    if !pcsc_ready(test) {
        return;
    }
    let Some(aws) = aws_cli(test) else { return };
    let token = SoftToken::approve(SLOT);
    let sts = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let home = Home::new();
    let long_term_secret = enrol_with_role(&home, &sts, &token.reader());
    let endpoint = sts.endpoint();

    // Locked, and nobody at a terminal: the AWS CLI gets one clear line naming the command.
    let o = caller_identity(&home, &aws, &endpoint);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("breakglass unlock prod --reason"),
        "credential_process error not shown: {err}"
    );
    assert_eq!(sts.counts().get_session_token, 0);

    // Fifty processes ask at once on a terminal: one ceremony, one STS call, one session.
    // Outside the home: the home is scanned for secrets at the end.
    let outputs = tempfile::tempdir().unwrap();
    let out_dir = outputs.path();
    let script = format!(
        "for i in $(seq 50); do '{BIN}' credential-process prod >'{0}'/$i.json 2>'{0}'/$i.err & done; wait; echo ALL-DONE",
        out_dir.display()
    );
    let mut sh = Command::new("bash");
    sh.args(["-c", &script]);
    home.env(&mut sh);
    let mut p = pty(sh, 60_000);
    let mut seen = String::new();
    seen += &p.exp_string("Why is the glass broken? ").unwrap();
    p.send_line("drill: fifty concurrent callers").unwrap();
    seen += &p.exp_string("Password holder, type your name: ").unwrap();
    p.send_line("Alice").unwrap();
    seen += &p.exp_string("Token holder, type your name: ").unwrap();
    p.send_line("Bob").unwrap();
    seen += &p
        .exp_string("Password holder, type the vault passphrase (not shown): ")
        .unwrap();
    p.send_line(PASSPHRASE).unwrap();
    seen += &p.exp_string("ALL-DONE").unwrap();
    // Each expected prompt was consumed once above; any second ceremony would show here.
    assert_eq!(
        seen.matches("type your name").count() + seen.matches("Why is the glass").count(),
        0,
        "one ceremony only:\n{seen}"
    );
    assert_eq!(
        seen.matches("is locked; two-person unlock").count(),
        1,
        "{seen}"
    );
    let counts = sts.counts();
    assert_eq!(
        counts.get_session_token, 1,
        "one GetSessionToken for 50 callers"
    );
    assert_eq!(counts.assume_role, 1, "one AssumeRole for 50 callers");
    let mut ids = std::collections::BTreeSet::new();
    let mut role_secret = String::new();
    let mut role_token = String::new();
    for i in 1..=50 {
        let text = std::fs::read_to_string(out_dir.join(format!("{i}.json"))).unwrap();
        assert!(!text.is_empty(), "caller {i} printed nothing");
        let err = std::fs::read_to_string(out_dir.join(format!("{i}.err"))).unwrap();
        let v: Value = serde_json::from_str(text.trim())
            .unwrap_or_else(|e| panic!("caller {i}: {e}: {text:?}, stderr {err:?}"));
        assert_eq!(v["Version"], 1);
        ids.insert(v["AccessKeyId"].as_str().unwrap().to_owned());
        role_secret = v["SecretAccessKey"].as_str().unwrap().to_owned();
        role_token = v["SessionToken"].as_str().unwrap().to_owned();
        assert!(v["Expiration"].as_str().unwrap().ends_with('Z'));
    }
    assert_eq!(ids.len(), 1, "every caller got the same role session");
    let role_key = ids.into_iter().next().unwrap();
    assert_eq!(
        sts.session_source_identity(&role_key).as_deref(),
        Some("Alice+Bob")
    );

    // The real AWS CLI, no terminal: the role identity, without a new ceremony.
    let o = caller_identity(&home, &aws, &endpoint);
    let who: Value = serde_json::from_str(&ok(o)).unwrap();
    assert_eq!(who["Account"], "123456789012");
    assert_eq!(
        who["Arn"],
        format!("arn:aws:sts::123456789012:assumed-role/{ROLE}/Alice+Bob")
    );
    assert_eq!(sts.counts().get_session_token, 1);

    // status: holders, expiry, the role; never a secret.
    let st = status(&home);
    let prof = &st["profiles"][0];
    assert_eq!(prof["profile"], "prod");
    assert_eq!(prof["password_holder"], "Alice");
    assert_eq!(prof["token_holder"], "Bob");
    assert_eq!(st["memory_locked"], true);
    let base_key = prof["temporary_access_key_id"].as_str().unwrap().to_owned();
    let (base_secret, base_token) = sts.session_secrets(&base_key).unwrap();
    let mut cmd = home.command(&["status"]);
    cmd.env("AWS_CONFIG_FILE", aws_config(&home, "prod"));
    let human = ok(run(cmd));
    assert!(
        human.contains("profile \"bg\" -> breakglass profile \"prod\""),
        "{human}"
    );
    assert!(
        human.contains("unlocked by Alice (password) and Bob (token)"),
        "{human}"
    );
    for s in [role_secret.as_str(), base_secret.expose_secret()] {
        assert!(!human.contains(s) && !st.to_string().contains(s));
    }

    // exec: the variables reach the command; its exit code comes back; no nesting.
    let o = run(home.command(&[
        "exec",
        "prod",
        "--",
        "sh",
        "-c",
        "test \"$AWS_ACCESS_KEY_ID\" = \"$1\" && test -n \"$AWS_SESSION_TOKEN\" && test \"$BREAKGLASS_PROFILE\" = prod && exit 7",
        "sh",
        &role_key,
    ]));
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    let mut nested = home.command(&["exec", "prod", "--", "true"]);
    nested.env("BREAKGLASS_PROFILE", "prod");
    fails(run(nested), 2, &["already inside `breakglass exec`"]);
    fails(
        run(home.command(&["exec", "prod"])),
        2,
        &["no command to run"],
    );

    // env: valid bash and fish, with a warning on stderr.
    for (shell, reader) in [
        (
            "bash",
            "eval \"$(cat)\"; printf %s \"$AWS_SECRET_ACCESS_KEY\"",
        ),
        ("fish", "source -; printf %s $AWS_SECRET_ACCESS_KEY"),
    ] {
        if tool(&format!("env for {shell}"), shell, "apt-get install fish").is_none() {
            continue;
        }
        let o = run(home.command(&["env", "prod", "--shell", shell]));
        assert!(stderr(&o).contains("are secrets"), "{}", stderr(&o));
        let text = ok(o);
        let mut sh = Command::new(shell);
        sh.args(["-c", reader]);
        let printed = ok(run_with_input(sh, Some(&text)));
        assert_eq!(printed, role_secret, "{shell}");
    }

    // Both sessions are in the agent's memory now (the scan works)...
    let pid = st["pid"].as_u64().unwrap();
    let needles = [
        role_secret.as_str(),
        role_token.as_str(),
        base_secret.expose_secret(),
        base_token.expose_secret(),
    ];
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    assert!(
        limits
            .lines()
            .any(|l| l.starts_with("Max core file size") && l.contains(" 0 ")),
        "{limits}"
    );
    let proc_status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let locked_kb: u64 = proc_status
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(
        locked_kb >= 512,
        "the session arena is locked: VmLck {locked_kb} kB"
    );
    let root = is_root();
    if root {
        let before = scan_memory(pid, &needles);
        assert!(
            before.iter().all(|n| *n >= 1),
            "scan finds the live sessions: {before:?}"
        );
    } else {
        skip(
            "the agent's memory scan",
            "needs root to read another process's memory",
        );
    }

    // ...and after `lock`, in neither memory nor any file.
    let out = ok(run(home.command(&["lock", "prod"])));
    assert!(out.contains("locked prod"), "{out}");
    if root {
        let after = scan_memory(pid, &needles);
        assert_eq!(
            after,
            vec![0; 4],
            "secrets left in the agent's memory after lock"
        );
    }
    home.assert_no_secret(&[
        ("long-term secret", &long_term_secret),
        ("passphrase", PASSPHRASE),
        ("role secret", &role_secret),
        ("role token", &role_token),
        ("session secret", base_secret.expose_secret()),
        ("session token", base_token.expose_secret()),
    ]);
    let o = caller_identity(&home, &aws, &endpoint);
    assert!(
        stderr(&o).contains("breakglass unlock prod"),
        "{}",
        stderr(&o)
    );

    // Every hand-out is audited with the caller's pid, executable and uid.
    let audit = home.audit();
    let handouts: Vec<&str> = audit
        .lines()
        .filter(|l| l.contains("\"event\":\"hand-out\""))
        .collect();
    assert!(handouts.len() >= 54, "{} hand-outs", handouts.len());
    assert!(
        handouts
            .iter()
            .all(|l| l.contains(&format!("\"uid\":{},", my_uid()))),
        "{handouts:?}"
    );
    // The caller's executable: breakglass itself (credential-process, exec, env).
    assert!(
        handouts
            .iter()
            .all(|l| l.contains(&format!("\"exe\":\"{BIN}\""))),
        "{handouts:?}"
    );
    assert!(audit.contains("\"event\":\"role assumed\""));
    assert!(audit.contains("\"why\":\"locked\""));
    ok(run(home.command(&["audit", "verify"])));
}

/// Sends raw bytes on the agent socket; returns the agent's answer (frame body as text).
fn raw(home: &Home, bytes: &[u8]) -> String {
    let mut s = UnixStream::connect(home.runtime().join("agent.sock")).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn foreign_uids_bad_messages_and_bad_sockets_are_refused() {
    // Debian's python3 and a copy of the binary: the checkout may sit where uid 65534
    // cannot reach (e.g. under /root).
    let python = if Path::new("/usr/bin/python3").is_file() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let home = Home::new();
    std::fs::create_dir_all(home.config_file().parent().unwrap()).unwrap();
    std::fs::write(home.config_file(), "[profiles.prod]\n").unwrap();
    // Starting on demand: a caller with no terminal gets "not unlocked", and an agent runs.
    let o = run(detached(&home, BIN, &["credential-process", "prod"]));
    let err = fails(
        o,
        3,
        &["profile prod is not unlocked", "breakglass unlock prod"],
    );
    assert_eq!(
        err.lines().count(),
        1,
        "one line for the AWS CLI to quote: {err}"
    );
    let first = status(&home)["pid"].as_u64().unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&home.runtime()), 0o700);
    assert_eq!(mode(&home.runtime().join("agent.sock")), 0o600);

    // Oversized and malformed messages get an error; the agent carries on.
    let answer = raw(&home, &u32::MAX.to_be_bytes());
    assert!(answer.contains("over the limit"), "{answer:?}");
    let answer = raw(&home, &[0, 0, 0, 3, 1, 0, 9]);
    assert!(answer.contains("malformed"), "{answer:?}");
    let answer = raw(&home, &[0, 0, 0, 1, 99]);
    assert!(answer.contains("unknown message kind"), "{answer:?}");
    assert_eq!(status(&home)["pid"].as_u64(), Some(first));

    if !is_root() {
        skip(
            "foreign_uids_bad_messages_and_bad_sockets_are_refused (another uid)",
            "needs root to connect as another user",
        );
    }
    if is_root() {
        // Another uid that reaches the socket is refused by SO_PEERCRED...
        let dirs = [
            home.dir.path().to_owned(),
            home.dir.path().join("run"),
            home.runtime(),
        ];
        for d in &dirs {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o711)).unwrap();
        }
        let sock = home.runtime().join("agent.sock");
        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
        let py = format!(
            // The agent refuses a foreign peer as soon as it connects, before reading: the
            // request may find the socket already closed (EPIPE), the refusal is there anyway.
            "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect({:?})\ntry:\n    s.sendall(bytes([0,0,0,1,6]))\nexcept BrokenPipeError:\n    pass\nsys.stdout.write(s.recv(4096)[7:].decode())",
            sock.display()
        );
        let o = run({
            let mut c = Command::new("setpriv");
            c.args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                python,
                "-c",
                &py,
            ]);
            c
        });
        let answer = ok(o);
        assert!(
            answer.contains(
                "refused: this agent serves uid 0 only, and the caller runs as uid 65534"
            ),
            "{answer:?}"
        );
        // ...and breakglass itself, run as another uid, will not use a directory not its own.
        let public = tempfile::tempdir().unwrap();
        std::fs::set_permissions(public.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let bin = public.path().join("breakglass");
        std::fs::copy(BIN, &bin).unwrap();
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&bin)
            .arg("status");
        home.env(&mut c);
        fails(run(c), 4, &["belongs to uid 0, not to you (uid 65534)"]);
        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600)).unwrap();
        for d in &dirs {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        // The agent records the refusal after answering; wait for the record.
        let audit = home.audit_with("\"event\":\"agent refused a connection\"");
        assert!(
            audit.contains("\"event\":\"agent refused a connection\""),
            "{audit}"
        );
        assert!(audit.contains("\"peer_uid\":65534"), "{audit}");
    }
    assert_eq!(
        status(&home)["pid"].as_u64(),
        Some(first),
        "the agent survived"
    );

    // A directory others can enter is refused, with the fix.
    std::fs::set_permissions(home.runtime(), std::fs::Permissions::from_mode(0o755)).unwrap();
    fails(
        run(home.command(&["status"])),
        4,
        &["mode 755", "chmod 700"],
    );
    std::fs::set_permissions(home.runtime(), std::fs::Permissions::from_mode(0o700)).unwrap();

    // An agent killed hard leaves a stale socket: the next caller replaces it.
    let _ = Command::new("kill")
        .args(["-9", &first.to_string()])
        .status();
    wait_until_agent_gone(&home);
    assert!(home.runtime().join("agent.sock").exists());
    let out = ok(run(home.command(&["status"])));
    assert!(out.contains("not running"), "{out}");
    fails(
        run(detached(&home, BIN, &["credential-process", "prod"])),
        3,
        &["not unlocked"],
    );
    let second = status(&home)["pid"].as_u64().unwrap();
    assert_ne!(second, first);

    if !is_root() {
        skip(
            "foreign_uids_bad_messages_and_bad_sockets_are_refused (a foreign socket file)",
            "needs root to make a file that belongs to another user",
        );
    }
    if is_root() {
        // A socket file that belongs to someone else is never replaced.
        ok(run(home.command(&["agent", "--stop"])));
        // The stopped agent answers before it exits; its lock goes with the process.
        wait_until_agent_gone(&home);
        let sock = home.runtime().join("agent.sock");
        let l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        drop(l);
        std::os::unix::fs::chown(&sock, Some(65534), Some(65534)).unwrap();
        let o = run(home.command(&["agent", "--foreground"]));
        fails(o, 4, &["belongs to uid 65534"]);
        assert!(sock.exists());
        std::fs::remove_file(&sock).unwrap();

        // A process of another uid listening on the socket path is not talked to: the client
        // checks the agent's uid too. (It binds in a shared directory; root moves the socket.)
        let shared = tempfile::tempdir().unwrap();
        std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let bound = shared.path().join("s");
        let py = format!(
            "import socket,sys,time\ns=socket.socket(socket.AF_UNIX)\ns.bind({:?})\ns.listen(8)\nprint('ready',flush=True)\ntime.sleep(30)",
            bound.display()
        );
        let mut impostor = Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                python,
                "-c",
                &py,
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(impostor.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "ready");
        std::fs::rename(&bound, &sock).unwrap();
        fails(
            run(home.command(&["status"])),
            4,
            &["runs as uid 65534, not as you"],
        );
        let _ = impostor.kill();
        let _ = impostor.wait();
        std::fs::remove_file(&sock).unwrap();
    }
}

/// The same hand-off against moto_server: `unlock` on a terminal, then the AWS CLI through
/// credential_process gets the role identity from moto.
#[test]
fn the_aws_cli_through_credential_process_against_moto() {
    let test = "the_aws_cli_through_credential_process_against_moto";
    if !pcsc_ready(test) {
        return;
    }
    let Some(aws) = aws_cli(test) else { return };
    let Some(moto) = Moto::start(test) else {
        return;
    };
    let rt = rt();
    let user = moto.breakglass_user(&rt);
    let iam = &user.iam;
    let seed = user.seed.clone();
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":["sts:AssumeRole","sts:SetSourceIdentity"],"Condition":{"Bool":{"aws:MultiFactorAuthPresent":"true"}}}]}"#;
    let role = rt
        .block_on(
            iam.create_role()
                .role_name(ROLE)
                .assume_role_policy_document(trust)
                .send(),
        )
        .unwrap()
        .role
        .unwrap();

    let token = SoftToken::approve(SLOT);
    let r = token.reader();
    let home = Home::new();
    enroll_imported(
        &home,
        "prod",
        &moto.endpoint,
        &r,
        &user.mfa_serial,
        (&user.key_id, &user.secret, &seed),
    );
    let mut config = std::fs::read_to_string(home.config_file()).unwrap();
    config += &format!("role_arn = \"{}\"\n", role.arn);
    std::fs::write(home.config_file(), config).unwrap();

    let out = unlock(&home, "prod", &r, ("Carol", "Dave"), PASSPHRASE);
    assert!(out.contains("The agent holds the session for arn:aws:sts::123456789012:assumed-role/BreakGlass/Carol+Dave"), "{out}");
    let o = caller_identity(&home, &aws, &moto.endpoint);
    let who: Value = serde_json::from_str(&ok(o)).unwrap();
    assert_eq!(who["Account"], "123456789012");
    assert_eq!(
        who["Arn"],
        format!("arn:aws:sts::123456789012:assumed-role/{ROLE}/Carol+Dave")
    );
    // A second unlock finds the session and runs no ceremony.
    let mut p = pty(
        home.command(&["unlock", "prod", "--reason", "again", "--reader", &r]),
        30_000,
    );
    let out = p.exp_eof().unwrap();
    assert!(
        out.contains("already unlocked (by Carol and Dave)"),
        "{out}"
    );
}

#[test]
fn a_hand_out_whose_record_cannot_be_written_is_refused() {
    let test = "a_hand_out_whose_record_cannot_be_written_is_refused";
    if !pcsc_ready(test) {
        return;
    }
    let token = SoftToken::approve(SLOT);
    let sts = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let home = Home::new();
    let (key_id, key_secret) = sts.create_access_key("breakglass");
    let (serial, seed) = sts.create_mfa_device("breakglass", "breakglass-token");
    enroll_imported(
        &home,
        "prod",
        &sts.endpoint(),
        &token.reader(),
        &serial,
        (&key_id, key_secret.expose_secret(), &seed),
    );
    let out = unlock(&home, "prod", &token.reader(), ("Alice", "Bob"), PASSPHRASE);
    session_json(&out);
    let handouts = |home: &Home| home.audit().matches("\"event\":\"hand-out\"").count();
    // The record is written before the credentials leave: it is there when they arrive.
    assert_eq!(handouts(&home), 1);
    let o = run(detached(&home, BIN, &["credential-process", "prod"]));
    let v: Value = serde_json::from_str(ok(o).trim()).unwrap();
    assert!(v["AccessKeyId"].as_str().unwrap().starts_with("ASIA"));
    assert_eq!(handouts(&home), 2);

    // A log other users could write is refused by the agent's append (whoever runs it, root
    // included): nothing is handed out, and the caller is told why.
    let log = home.dir.path().join("state/breakglass/audit.log");
    let before = std::fs::read(&log).unwrap();
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o666)).unwrap();
    let o = run(detached(&home, BIN, &["credential-process", "prod"]));
    assert!(stdout(&o).is_empty(), "credentials left: {}", stdout(&o));
    let err = fails(o, 1, &["handed out nothing", "audit", "chmod 600"]);
    assert!(
        err.lines().count() == 1,
        "credential_process errors are one line: {err}"
    );
    assert_eq!(std::fs::read(&log).unwrap(), before, "nothing appended");

    // The log replaced by a folder: the same.
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o600)).unwrap();
    let aside = log.with_file_name("audit.log.aside");
    std::fs::rename(&log, &aside).unwrap();
    std::fs::create_dir(&log).unwrap();
    let o = run(home.command(&["env", "prod"]));
    assert!(stdout(&o).is_empty(), "credentials left: {}", stdout(&o));
    fails(o, 1, &["handed out nothing", "audit.log"]);

    // Fixed: hand-outs resume, each with its record, and the chain is whole.
    std::fs::remove_dir(&log).unwrap();
    std::fs::rename(&aside, &log).unwrap();
    ok(run(detached(&home, BIN, &["credential-process", "prod"])));
    assert_eq!(handouts(&home), 3);
    ok(run(home.command(&["audit", "verify"])));
}

#[test]
fn slow_clients_cannot_keep_the_owner_out() {
    let home = Home::new();
    std::fs::create_dir_all(home.config_file().parent().unwrap()).unwrap();
    std::fs::write(home.config_file(), "[profiles.prod]\n").unwrap();
    // Starts the agent on demand ("not unlocked": no terminal here).
    let _ = run(detached(&home, BIN, &["credential-process", "prod"]));
    // More clients than the agent has places, each one byte into its request and no further.
    let socket = home.runtime().join("agent.sock");
    let slow: Vec<UnixStream> = (0..300)
        .map(|_| {
            let mut s = UnixStream::connect(&socket).unwrap();
            s.write_all(&[0]).unwrap();
            s
        })
        .collect();
    // The owner still gets answers: a newcomer takes the place of the oldest slow one.
    let mut cmd = Command::new("timeout");
    cmd.args(["10", BIN, "status", "--json"]);
    home.env(&mut cmd);
    let o = run(cmd);
    assert!(o.status.success(), "status was kept out: {}", stderr(&o));
    let status: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(status.get("profiles").is_some(), "{status}");
    // The slow ones that lost their place were cut, not left hanging.
    let cut = slow
        .into_iter()
        .filter(|s| {
            let mut s = s;
            s.set_read_timeout(Some(std::time::Duration::from_millis(1)))
                .unwrap();
            matches!(s.read(&mut [0u8; 1]), Ok(0))
        })
        .count();
    assert!(cut >= 300 - 256, "only {cut} slow clients were cut");
}

#[test]
fn only_the_breakglass_program_can_lead_and_plant_a_session() {
    use breakglass::agent::client::{Client, Reply};
    let home = Home::new();
    std::fs::create_dir_all(home.config_file().parent().unwrap()).unwrap();
    std::fs::write(home.config_file(), "[profiles.prod]\n").unwrap();
    let _ = run(detached(&home, BIN, &["credential-process", "prod"]));
    let paths = breakglass::config::Paths {
        config: home.config_file(),
        data: home.dir.path().join("data/breakglass"),
        state: home.dir.path().join("state/breakglass"),
        runtime: home.runtime(),
    };
    // This test process asks as a person at a terminal would: it is not made the leader, so
    // it has no lead to answer with credentials and holder names of its choosing.
    let client = Client::running(&paths).unwrap();
    match client.get("prod", None, true, true).unwrap() {
        Reply::NoSession(reason) => assert!(
            reason.contains("only the breakglass program itself runs its ceremony"),
            "{reason}"
        ),
        _ => panic!("another program was made the ceremony's leader"),
    }
    let s = status(&home);
    assert_eq!(
        s["profiles"]
            .as_array()
            .map_or(0, |p| p.iter().filter(|p| !p["session"].is_null()).count()),
        0,
        "{s}"
    );
}
