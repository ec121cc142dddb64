//! `breakglass console` end to end against the sandbox: the agent's session assumes the role,
//! the sign-in emulator issues a token, and a real headless Chromium opens the URL and lands
//! on the console page naming the role and both holders. A screenshot is kept in `target/`.

use crate::common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use secrecy::ExposeSecret;

use breakglass::sandbox::sts::Sts;
use common::home::*;
use common::*;

const SLOT: u16 = 0;

/// Debian's Chromium; skips or fails like the pcscd check.
fn chromium(test: &str) -> Option<PathBuf> {
    let found = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            !crate::common::require_all(),
            "Chromium is required in CI (apt-get install chromium)"
        );
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: chromium is not installed"
        );
    }
    found
}

/// Headless Chromium with a fresh profile, as the issue prescribes.
/// Under `timeout`, so a Chromium that hangs fails the test instead of stalling CI.
fn headless(chromium: &Path, profile: &Path, action: &str, url: &str) -> Output {
    Command::new("timeout")
        .args(["-k", "10", "120"])
        .arg(chromium)
        .args([
            "--headless",
            // Containers often have a small /dev/shm, where Chromium's renderer crashes.
            "--disable-dev-shm-usage",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1000,700",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(action)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .expect("run chromium")
}

fn detached(home: &Home, args: &[&str]) -> Output {
    let mut cmd = Command::new("setsid");
    cmd.arg("-w").arg(BIN).args(args);
    home.env(&mut cmd);
    cmd.stdin(Stdio::null()).output().unwrap()
}

#[test]
fn console_sign_in_in_a_real_browser_against_the_sandbox() {
    let test = "console_sign_in_in_a_real_browser_against_the_sandbox";
    if !pcsc_ready(test) {
        return;
    }
    let Some(chromium) = chromium(test) else {
        return;
    };
    let token = SoftToken::approve(SLOT);
    let sts = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let (key_id, key_secret) = sts.create_access_key("breakglass");
    let (serial, seed) = sts.create_mfa_device("breakglass", "breakglass-token");
    let role_arn = sts.create_role("BreakGlassConsole", true);
    let home = Home::new();
    let endpoint = sts.endpoint();
    let r = token.reader();
    enroll_imported(
        &home,
        "prod",
        &endpoint,
        &r,
        &serial,
        (&key_id, key_secret.expose_secret(), &seed),
    );
    let federation = sts.federation_endpoint();
    let console = |extra: &[&str]| {
        let mut args = vec!["console", "prod", "--signin-endpoint", &federation];
        args.extend_from_slice(extra);
        detached(&home, &args)
    };

    // Locked: say to unlock. No role: say how to name one.
    fails(
        console(&["--print", "--role-arn", &role_arn]),
        3,
        &["breakglass unlock prod"],
    );
    unlock(&home, "prod", &r, ("Alice", "Bob"), PASSPHRASE);
    fails(console(&["--print"]), 2, &["names no role", "--role-arn"]);
    fails(
        console(&[
            "--print",
            "--role-arn",
            &role_arn,
            "--destination",
            "https://evil.example/",
        ]),
        2,
        &["is not an https:// URL of the console"],
    );
    fails(
        console(&["--browser", "/nonexistent/browser", "--role-arn", &role_arn]),
        3,
        &["no browser could be opened", "--print"],
    );
    // A role the session may not assume: the ARN and AWS's reason.
    let denied = sts.create_role_denying("NobodysRole");
    fails(
        console(&["--print", "--role-arn", &denied]),
        4,
        &[&denied, "trust policy"],
    );
    // A sign-in endpoint that answers with something else, or not at all.
    let wrong = format!("{endpoint}/not-federation");
    let mut args = vec!["console", "prod", "--print", "--role-arn", &role_arn];
    args.extend(["--signin-endpoint", &wrong]);
    fails(
        detached(&home, &args),
        3,
        &["refused the role session (HTTP 404)"],
    );
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/federation", l.local_addr().unwrap())
    };
    let mut args = vec!["console", "prod", "--print", "--role-arn", &role_arn];
    args.extend(["--signin-endpoint", &closed]);
    fails(detached(&home, &args), 3, &["could not be reached"]);

    // The URL: on stdout with --print only; the validity on stderr.
    let o = console(&["--print", "--role-arn", &role_arn]);
    let err = stderr(&o);
    let url = ok(o).trim().to_owned();
    assert!(
        url.starts_with(&format!("{federation}?Action=login&Issuer=")),
        "{url}"
    );
    assert!(err.contains("The link works once, until"), "{err}");
    assert!(err.contains("no ceremony is needed"), "{err}");
    assert!(!err.contains(&url));

    // A real browser follows it to the console page: the role and both holders' names.
    let profile_dir = tempfile::tempdir().unwrap();
    let o = headless(&chromium, profile_dir.path(), "--dump-dom", &url);
    let dom = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        dom.contains("arn:aws:sts::123456789012:assumed-role/BreakGlassConsole/Alice+Bob"),
        "console page:\n{dom}\nstderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(dom.contains("id=\"source-identity\""), "{dom}");
    assert!(dom.contains("Alice+Bob"), "{dom}");

    // The token is single use: the same link now fails.
    let again = tempfile::tempdir().unwrap();
    let o = headless(&chromium, again.path(), "--dump-dom", &url);
    let dom = String::from_utf8_lossy(&o.stdout);
    assert!(dom.contains("already used"), "{dom}");
    assert!(!dom.contains("assumed-role/BreakGlassConsole"), "{dom}");

    // A screenshot of a fresh sign-in, kept as a CI artifact.
    let url = ok(console(&["--print", "--role-arn", &role_arn]))
        .trim()
        .to_owned();
    let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshot.png");
    let _ = std::fs::remove_file(&shot);
    let shots = tempfile::tempdir().unwrap();
    let o = headless(
        &chromium,
        shots.path(),
        &format!("--screenshot={}", shot.display()),
        &url,
    );
    assert!(
        shot.is_file() && std::fs::metadata(&shot).unwrap().len() > 1000,
        "no screenshot: {}",
        String::from_utf8_lossy(&o.stderr)
    );

    // --browser opens it with the given command (here one that records the URL's shape).
    let seen = home.dir.path().join("seen");
    let script = home.dir.path().join("browser.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncase \"$1\" in {federation}?Action=login*) echo ok > {} ;; esac\n",
            seen.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = console(&[
        "--browser",
        script.to_str().unwrap(),
        "--role-arn",
        &role_arn,
    ]);
    assert!(
        stderr(&o).contains("opened in the browser"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read_to_string(&seen).unwrap().trim(), "ok");
    std::fs::remove_file(&seen).unwrap();

    // Audit: one record per URL made, naming role, account and holders; never the URL.
    let audit = home.audit();
    let urls: Vec<&str> = audit
        .lines()
        .filter(|l| l.contains("\"event\":\"console sign-in URL\""))
        .collect();
    assert_eq!(urls.len(), 3, "{audit}");
    assert!(urls
        .iter()
        .all(|l| l.contains("\"account\":\"123456789012\"")
            && l.contains("\"password_holder\":\"Alice\"")
            && l.contains("\"token_holder\":\"Bob\"")));
    assert!(
        !audit.contains("SigninToken"),
        "the URL leaked into the audit log"
    );
    let counts = sts.counts();
    assert_eq!(
        counts.get_session_token, 1,
        "no new ceremony for the console"
    );
    assert_eq!(counts.logins, 2);
    assert!(counts.refused_logins >= 1);
}
