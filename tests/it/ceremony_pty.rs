//! Enrolment and the two-person unlock driven through a real pseudo-terminal, with the soft
//! token behind the real pcscd (vpcd slot 00), against the embedded strict STS emulator and
//! against moto_server. Afterwards no secret may be found in any file written.

use crate::common;

use std::net::SocketAddr;

use secrecy::ExposeSecret;

use breakglass::sandbox::sts::Sts;
use common::home::*;
use common::*;

const SLOT: u16 = 0;

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
        &light_enrolment(
            &[
                "prod",
                "--import-key",
                "--create-mfa",
                "--user",
                "breakglass",
            ],
            &sts.endpoint(),
            &r,
        ),
        &[&key_id, key_secret.expose_secret()],
        &[
            ("AWS_ACCESS_KEY_ID", &admin_id),
            ("AWS_SECRET_ACCESS_KEY", admin_secret.expose_secret()),
        ],
    );
    let vault_before = std::fs::read(home.vault("prod")).unwrap();
    // Enrolment used the current and the next MFA windows: skip past them (a real run waits).
    home.skip_ahead(Some(&sts), 60);

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

    // The activation.
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

    // The agent writes a hand-out's record before the credentials leave it: the record is
    // there as soon as `unlock` has printed them, no waiting.
    let audit = home.audit();
    let ceremonies: Vec<&str> = audit
        .lines()
        .filter(|l| l.contains("\"event\":\"enrolment\"") || l.contains("\"event\":\"activation\""))
        .collect();
    assert_eq!(ceremonies.len(), 4, "{audit}"); // enrolment, two failures, success
    assert!(audit.contains("\"outcome\":\"failure: passphrase or token did not open this vault\""));
    // The agent adds its start and the hand-out to `unlock`.
    assert!(audit.contains("\"event\":\"agent started\""), "{audit}");
    assert!(audit.contains("\"event\":\"hand-out\""), "{audit}");
    let last = ceremonies[3];
    assert!(
        last.contains("\"password_holder\":\"Alice\"") && last.contains("\"token_holder\":\"Bob\""),
        "{last}"
    );
    assert!(
        last.contains(tmp_id) && last.contains("\"outcome\":\"success\""),
        "{last}"
    );
    let v = home.command(&["audit", "verify"]).output().unwrap();
    let records = audit.lines().count();
    assert!(String::from_utf8_lossy(&v.stdout)
        .contains(&format!("{records} records, hash chain intact")));

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

#[test]
fn enroll_with_an_existing_mfa_device_and_unlock_against_moto() {
    if !pcsc_ready("enroll_with_an_existing_mfa_device_and_unlock_against_moto") {
        return;
    }
    let Some(moto) = Moto::start("enroll_with_an_existing_mfa_device_and_unlock_against_moto")
    else {
        return;
    };
    let rt = rt();
    let user = moto.breakglass_user(&rt);
    let seed = user.seed.clone();
    let serial = user.mfa_serial.clone();

    let token = SoftToken::approve(SLOT);
    let r = token.reader();
    let home = Home::new();
    enroll_imported(
        &home,
        "moto",
        &moto.endpoint,
        &r,
        &serial,
        (&user.key_id, &user.secret, &seed),
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
        ("secret access key", user.secret.as_str()),
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
    args.extend(LIGHT_KDF);
    args.extend(OATH_FACTOR);
    let (pr, br) = (primary.reader(), backup.reader());
    args.extend(["--reader", &pr]);
    enroll(&home, &args, &[&key_id, key_secret.expose_secret()], &admin);

    // The same token cannot be added twice.
    let mut cmd = home.command(&[
        "enroll",
        "prod",
        "--add-token",
        "--factor",
        "oath",
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
        "--factor",
        "oath",
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
    home.skip_ahead(Some(&sts), 60);
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
    let common = light_enrolment(&[], &endpoint, &r);
    let mut prod = vec![
        "prod",
        "--import-key",
        "--create-mfa",
        "--user",
        "breakglass",
    ];
    prod.extend(&common);
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
    stage.extend(&common);
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
    home.skip_ahead(Some(&sts), 60);
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
fn a_vault_copied_over_another_profiles_vault_is_refused() {
    if !pcsc_ready("a_vault_copied_over_another_profiles_vault_is_refused") {
        return;
    }
    // Two profiles on one token, one passphrase: without the binding, either vault would open
    // under either profile.
    let token = SoftToken::approve(SLOT);
    let r = token.reader();
    let sts = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let home = Home::new();
    for (profile, user) in [("prod", "breakglass"), ("stage", "breakglass-stage")] {
        sts.create_user(user);
        let (key_id, key_secret) = sts.create_access_key(user);
        let (serial, seed) = sts.create_mfa_device(user, &format!("{user}-token"));
        enroll_imported(
            &home,
            profile,
            &sts.endpoint(),
            &r,
            &serial,
            (&key_id, key_secret.expose_secret(), &seed),
        );
    }
    std::fs::copy(home.vault("prod"), home.vault("stage")).unwrap();
    let out = unlock(&home, "stage", &r, ("Alice", "Bob"), PASSPHRASE);
    assert!(
        out.contains(
            "this vault was sealed for profile \"prod\", not for profile \"stage\": refusing to use it"
        ),
        "{out}"
    );
    assert!(
        out.contains("next: give each profile its own vault"),
        "{out}"
    );
    assert_eq!(sts.counts().get_session_token, 0, "no MFA code was sent");
    // Its own profile still opens it.
    let out = unlock(&home, "prod", &r, ("Alice", "Bob"), PASSPHRASE);
    assert!(
        session_json(&out)["AccessKeyId"]
            .as_str()
            .unwrap()
            .starts_with("ASIA"),
        "{out}"
    );
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
        &light_enrolment(
            &[
                "prod",
                "--import-key",
                "--create-mfa",
                "--user",
                "breakglass",
            ],
            &endpoint,
            &r,
        ),
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
