//! `cargo bench --bench agent`: figures of the hand-off, printed, never asserted.
//!
//! - warm `breakglass credential-process` (whole process) against a minimal binary printing the
//!   same JSON (`cat`);
//! - `aws sts get-caller-identity` through credential_process against the same call with the
//!   credentials in environment variables (needs `aws` on PATH; skipped otherwise);
//! - the agent's resident memory with 10 profiles unlocked.
//!
//! Sessions come from the embedded STS (GetSessionToken with a real MFA code) and are handed to
//! a real agent process through the client protocol, as a ceremony's leader would.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use breakglass::agent::client::{Client, Reply};
use breakglass::aws::{sts, Endpoint, Signer};
use breakglass::config::Paths;
use breakglass::sandbox::sts::Sts;
use breakglass::token::otp::{self, Algorithm};

const BIN: &str = env!("CARGO_BIN_EXE_breakglass");
const PROFILES: usize = 10;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time_runs(runs: usize, mut f: impl FnMut()) -> Duration {
    f();
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect(),
    )
}

fn env_for(cmd: &mut Command, home: &Path) {
    cmd.env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_DATA_HOME", home.join("data"))
        .env("XDG_STATE_HOME", home.join("state"))
        .env("XDG_RUNTIME_DIR", home.join("run"))
        .env_remove("BREAKGLASS_CONFIG")
        .env_remove("AWS_PROFILE");
}

fn rss_kib(pid: u64) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn main() {
    // The agent runs from this very executable: the agent makes only a caller that runs its
    // own program a leader, and the leaders that store the sessions measured here are this
    // bench (a real ceremony per profile would need ten tokens).
    if std::env::args().any(|a| a == "--as-agent") {
        let paths = Paths::from_env().unwrap();
        breakglass::agent::server::run(
            paths,
            breakglass::agent::server::Options {
                foreground: true,
                idle_timeout_minutes: None,
            },
        )
        .unwrap();
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    std::fs::create_dir_all(h.join("run")).unwrap();
    std::fs::create_dir_all(h.join("config/breakglass")).unwrap();
    let mut config = String::new();
    for i in 0..PROFILES {
        config += &format!("[profiles.p{i}]\nregion = \"us-east-1\"\n\n");
    }
    std::fs::write(h.join("config/breakglass/config.toml"), config).unwrap();
    let paths = Paths {
        config: h.join("config/breakglass/config.toml"),
        data: h.join("data/breakglass"),
        state: h.join("state/breakglass"),
        runtime: h.join("run/breakglass"),
    };

    // Started as `unlock` starts it (Client::start sets MALLOC_ARENA_MAX=2), in the foreground
    // so the benchmark owns the process.
    let mut agent_cmd = Command::new(std::env::current_exe().unwrap());
    agent_cmd.arg("--as-agent").env("MALLOC_ARENA_MAX", "2");
    env_for(&mut agent_cmd, h);
    let mut agent = agent_cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let client = loop {
        match Client::running(&paths) {
            Ok(c) => break c,
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    let pid = u64::from(agent.id());
    let rss_empty = rss_kib(pid);

    // Ten sessions from the emulator, one per profile, each with its own MFA device.
    let emulator = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let endpoint = Endpoint::new("us-east-1", Some(emulator.endpoint()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let now = breakglass::clock::Clock::now(&breakglass::clock::SystemClock);
    for i in 0..PROFILES {
        let user = format!("bg{i}");
        let (key_id, secret) = emulator.create_access_key(&user);
        let (serial, seed) = emulator.create_mfa_device(&user, &user);
        let seed = data_encoding::BASE32_NOPAD.decode(seed.as_bytes()).unwrap();
        let code = otp::totp(Algorithm::Sha1, &seed, now, 30, 6);
        let signer = Signer {
            access_key_id: &key_id,
            secret_access_key: &secret,
            session_token: None,
        };
        let s = rt
            .block_on(sts::get_session_token(
                &endpoint, &signer, &serial, &code, 43_200, now,
            ))
            .unwrap();
        let Reply::LeadCeremony(lead) = client.get(&format!("p{i}"), None, true, false).unwrap()
        else {
            panic!("expected to lead");
        };
        let identity = format!("arn:aws:iam::123456789012:user/{user}");
        match lead
            .put_base(&s, &serial, "alice", "bob", &identity)
            .unwrap()
        {
            Reply::Creds(_) => {}
            _ => panic!("expected the credentials back"),
        }
    }
    let rss_full = rss_kib(pid);

    // Warm credential-process, whole process, against `cat` of the same JSON.
    let mut cp = Command::new(BIN);
    cp.args(["credential-process", "p0"]);
    env_for(&mut cp, h);
    cp.stdin(Stdio::null()).stderr(Stdio::null());
    let json = cp.output().unwrap().stdout;
    assert!(
        json.starts_with(b"{\"Version\":1"),
        "no credentials printed"
    );
    let json_file = h.join("creds.json");
    std::fs::write(&json_file, &json).unwrap();
    let runs = 200;
    let ours = time_runs(runs, || {
        assert!(cp.output().unwrap().status.success());
    });
    let mut cat = Command::new("cat");
    cat.arg(&json_file).stdin(Stdio::null());
    let minimal = time_runs(runs, || {
        assert!(cat.output().unwrap().status.success());
    });
    println!(
        "credential-process (warm, whole process): median {ours:?} over {runs} runs; `cat` of the same JSON {minimal:?}; ratio {:.2}",
        ours.as_secs_f64() / minimal.as_secs_f64()
    );
    let rss_after = rss_kib(pid);
    println!(
        "agent RSS: {rss_empty} KiB empty, {rss_full} KiB with {PROFILES} profiles unlocked, {rss_after} KiB after {} hand-outs",
        runs * 2 + 2
    );

    // The AWS CLI: credential_process against the same credentials in the environment.
    let aws = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("aws"))
            .find(|f| f.is_file())
    });
    match aws {
        None => println!("aws CLI not on PATH: the AWS CLI comparison is skipped"),
        Some(aws) => {
            let aws_config = h.join("aws-config");
            std::fs::write(
                &aws_config,
                format!("[profile bg]\ncredential_process = {BIN} credential-process p0\nregion = us-east-1\n"),
            )
            .unwrap();
            let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
            let args = [
                "sts",
                "get-caller-identity",
                "--endpoint-url",
                &emulator.endpoint(),
            ];
            let mut with_cp = Command::new(&aws);
            with_cp.args(args).args(["--profile", "bg"]);
            env_for(&mut with_cp, h);
            with_cp.env("AWS_CONFIG_FILE", &aws_config);
            let mut with_env = Command::new(&aws);
            with_env.args(args);
            env_for(&mut with_env, h);
            with_env
                .env("AWS_CONFIG_FILE", h.join("none"))
                .env("AWS_SHARED_CREDENTIALS_FILE", h.join("none"))
                .env("AWS_DEFAULT_REGION", "us-east-1")
                .env("AWS_ACCESS_KEY_ID", v["AccessKeyId"].as_str().unwrap())
                .env(
                    "AWS_SECRET_ACCESS_KEY",
                    v["SecretAccessKey"].as_str().unwrap(),
                )
                .env("AWS_SESSION_TOKEN", v["SessionToken"].as_str().unwrap());
            let runs = 15;
            let a = time_runs(runs, || {
                let o = with_cp.output().unwrap();
                assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            });
            let b = time_runs(runs, || {
                let o = with_env.output().unwrap();
                assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            });
            println!(
                "aws sts get-caller-identity: credential_process median {a:?}, env variables {b:?} ({runs} runs each); ratio {:.3}",
                a.as_secs_f64() / b.as_secs_f64()
            );
        }
    }
    let _ = client.stop();
    let _ = agent.wait();
    std::fs::remove_file(&json_file).unwrap();
}
