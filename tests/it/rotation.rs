//! Key rotation through the real binary, pcscd and the soft token, against the sandbox's
//! emulator (strict like IAM: two keys per user, inactive and deleted keys refused, a
//! propagation delay that can be set) and moto: the full rotation with its days, `--now`,
//! `--check`, refusals, and a kill at every step followed by a run that finishes or undoes it.

use crate::common;

use std::net::SocketAddr;

use secrecy::ExposeSecret;
use serde_json::Value;

use breakglass::ceremony::rotate::CRASH_POINTS;
use breakglass::sandbox::sts::Sts;
use breakglass::vault::Vault;
use common::home::*;
use common::*;

const DAY: u64 = 86_400;

/// Enrols `prod` at the emulator ([`enrol_at_emulator`]); returns the key's id.
fn enrol(home: &Home, sts: &Sts, reader: &str) -> String {
    enrol_at_emulator(home, sts, "prod", reader).0
}

/// What a command on a pty printed, and how it ended (`Exited(.., N)`, `Signaled(.., SIGKILL, ..)`).
struct Ran {
    out: String,
    end: String,
}

impl Ran {
    fn code(&self) -> Option<i32> {
        let digits: String = self
            .end
            .rsplit(", ")
            .next()?
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        self.end
            .starts_with("Exited")
            .then(|| digits.parse().ok())?
    }

    fn ok(&self) -> &str {
        assert_eq!(self.code(), Some(0), "{}\n{}", self.end, self.out);
        &self.out
    }
}

/// `breakglass rotate prod ARGS` on a pty, answered as Alice and Bob; `env` is added.
fn rotate(home: &Home, reader: &str, args: &[&str], env: &[(&str, &str)]) -> Ran {
    let mut all = vec![
        "rotate",
        "prod",
        "--reason",
        "quarterly rotation",
        "--reader",
        reader,
    ];
    all.extend_from_slice(args);
    let mut cmd = home.command(&all);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut p = pty(cmd, 30_000);
    let out = answer_until_end(&mut p, || {});
    let end = format!("{:?}", p.process().wait().unwrap());
    // A ceremony that waited for a TOTP window would be waiting for wall-clock time.
    assert!(
        !out.contains("waiting for a fresh MFA time window"),
        "skip ahead instead:\n{out}"
    );
    Ran { out, end }
}

/// `breakglass ARGS` without a terminal.
fn run(home: &Home, args: &[&str]) -> std::process::Output {
    run_with_input(home.command(args), None)
}

/// The vault's key facts: key id and generation.
fn vault_key(home: &Home) -> (String, u32) {
    let v = Vault::from_bytes(&std::fs::read(home.vault("prod")).unwrap()).unwrap();
    let k = v
        .key_facts()
        .expect("a rotated vault says which key it holds");
    (k.access_key_id.clone(), k.generation)
}

/// The user's keys at the emulator: (id, status).
fn keys(sts: &Sts) -> Vec<(String, &'static str)> {
    sts.access_keys("breakglass")
        .into_iter()
        .map(|(id, status, _)| (id, status))
        .collect()
}

fn rotation_records(home: &Home) -> Vec<Value> {
    home.audit()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["event"] == "key rotation")
        .collect()
}

#[test]
fn a_rotation_seals_a_new_key_and_retires_the_old_one_on_its_days() {
    let test = "a_rotation_seals_a_new_key_and_retires_the_old_one_on_its_days";
    if !pcsc_ready(test) {
        return;
    }
    let token = SoftToken::approve(0);
    let r = token.reader();
    let sts = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let home = Home::new();
    let old = enrol(&home, &sts, &r);
    // IAM takes a while to make a new key work: the ceremony waits for it.
    sts.set_key_propagation(1);
    let old_secret = sts.access_key_secret(&old).unwrap();

    let t0 = std::time::Instant::now();
    let transcript = home.config_file().with_file_name("rotation-transcript.md");
    let ran = rotate(
        &home,
        &r,
        &["--transcript", transcript.to_str().unwrap()],
        &[],
    );
    let out = ran.ok();
    eprintln!(
        "one rotation against the emulator: {:?} (with a 1 s propagation delay)",
        t0.elapsed()
    );
    let (new, generation) = vault_key(&home);
    assert_ne!(new, old);
    assert_eq!(generation, 1);
    assert_eq!(keys(&sts), {
        let mut k = vec![(old.clone(), "Active"), (new.clone(), "Active")];
        k.sort();
        k
    });
    assert!(out.contains("Created the new access key"), "{out}");
    assert!(
        out.contains("The new key") && out.contains("works"),
        "{out}"
    );
    assert!(out.contains("Other copies of this vault"), "{out}");
    assert!(out.contains("stays active until"), "{out}");
    let vault = home.vault("prod");
    assert!(
        !breakglass::ceremony::rotate::previous_path(&vault).exists(),
        "the old vault's copy goes once the new one is sealed"
    );
    let new_secret = sts.access_key_secret(&new).unwrap();
    // The witnesses' transcript: people, reason, steps, masked keys, the audit heads.
    let md = std::fs::read_to_string(&transcript).unwrap();
    assert!(md.starts_with("# Key rotation — profile prod"), "{md}");
    for needle in [
        "| password holder | Alice |",
        "| token holder | Bob |",
        "| reason | quarterly rotation |",
        "| result | completed |",
        "Created the new access key",
        "Sealed the new key",
        "| vault generation | 1 |",
        "audit head before | `",
        "Alice (password holder): ____",
        "Bob (token holder): ____",
    ] {
        assert!(md.contains(needle), "{needle:?} missing:\n{md}");
    }
    let masked = |k: &str| format!("****************{}", &k[k.len() - 4..]);
    assert!(
        md.contains(&masked(&new)) && md.contains(&masked(&old)),
        "{md}"
    );
    assert!(
        !md.contains(&new) && !md.contains(&old),
        "key ids are masked: {md}"
    );
    // The head after is the log's head at the end of the ceremony.
    let verify = run(&home, &["audit", "head"]);
    let head = stdout(&verify)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    assert!(md.contains(&format!("audit head after | `{head}`")), "{md}");

    // Nothing due on the day of the rotation; the old key's retirement is shown.
    let o = run(&home, &["rotate", "--check"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let text = stdout(&o);
    assert!(
        text.contains("generation 1") && text.contains("nothing due"),
        "{text}"
    );
    assert!(
        text.contains("old key") && text.contains("staged"),
        "{text}"
    );

    // Another rotation while the old key waits for its days: refused before anyone is asked.
    let ran = rotate(&home, &r, &[], &[]);
    assert_eq!(ran.code(), Some(4), "{}", ran.out);
    assert!(
        ran.out.contains("the last rotation is not finished"),
        "{}",
        ran.out
    );
    assert!(!ran.out.contains("Deriving"), "no ceremony: {}", ran.out);

    // `--finish` before the day: nothing to do, and no ceremony.
    let o = run(&home, &["rotate", "prod", "--finish"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("Nothing is due yet"), "{}", stdout(&o));

    // Day 100 (10 days after the rotation): deactivation is due, and `status` says so.
    home.skip_ahead(Some(&sts), 10 * DAY);
    let o = run(&home, &["status"]);
    assert!(
        stdout(&o).contains("warning: profile \"prod\": deactivate old key"),
        "{}",
        stdout(&o)
    );
    let o = run(&home, &["rotate", "--check", "--json"]);
    assert_eq!(o.status.code(), Some(5), "{}", stdout(&o));
    let due: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(due[0]["actions"], serde_json::json!(["deactivate old key"]));
    // A plain `rotate` now offers to finish the last one instead, in the same ceremony.
    let mut p = pty(
        home.command(&["rotate", "prod", "--reason", "day 100", "--reader", &r]),
        30_000,
    );
    p.exp_string("Finish it instead").unwrap();
    p.exp_string("Type yes to go on: ").unwrap();
    p.send_line("yes").unwrap();
    answer_ceremony(&mut p, None);
    let out = p.exp_eof().unwrap();
    assert!(out.contains("Deactivated the old key"), "{out}");
    assert!(
        keys(&sts).contains(&(old.clone(), "Inactive")),
        "{:?}",
        keys(&sts)
    );
    assert!(keys(&sts).contains(&(new.clone(), "Active")));

    // Day 110: deletion.
    home.skip_ahead(Some(&sts), 10 * DAY);
    let o = run(&home, &["rotate", "--check"]);
    assert_eq!(o.status.code(), Some(5), "{}", stdout(&o));
    assert!(stdout(&o).contains("delete old key"), "{}", stdout(&o));
    let out = rotate(&home, &r, &["--finish"], &[]).ok().to_owned();
    assert!(out.contains("Deleted the old key"), "{out}");
    assert_eq!(keys(&sts), vec![(new.clone(), "Active")]);
    let o = run(&home, &["rotate", "--check"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));

    let steps: Vec<Value> = rotation_records(&home)
        .iter()
        .map(|r| r["step"].clone())
        .collect();
    assert_eq!(
        steps,
        ["new key sealed", "old key deactivated", "old key deleted"]
    );
    home.skip_ahead(Some(&sts), 60);
    // The rotated vault unlocks (the emulator refuses a deleted key).
    let out = unlock(&home, "prod", &r, ("Alice", "Bob"), PASSPHRASE);
    assert!(out.contains("\"Version\":1"), "{out}");
    // The real AWS CLI gets the rotated key's session through credential_process.
    if let Some(aws) = tool(test, "aws", "pip install 'awscli<2'") {
        // The AWS CLI signs with the system clock: the emulator comes back to it (the session,
        // issued 20 days ahead, is still valid then).
        sts.set_clock_offset(0);
        let config = home.dir.path().join("aws-config");
        let bin = env!("CARGO_BIN_EXE_breakglass");
        std::fs::write(
            &config,
            format!("[profile bg]\ncredential_process = {bin} credential-process prod\nregion = us-east-1\n"),
        )
        .unwrap();
        let mut cmd = std::process::Command::new("setsid");
        cmd.arg("-w").arg(&aws);
        cmd.args([
            "sts",
            "get-caller-identity",
            "--profile",
            "bg",
            "--output",
            "json",
        ]);
        cmd.args(["--endpoint-url", &sts.endpoint()]);
        home.env(&mut cmd);
        cmd.env("AWS_CONFIG_FILE", &config);
        let o = run_with_input(cmd, None);
        assert!(o.status.success(), "{}", stderr(&o));
        let id: Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(id["Arn"], "arn:aws:iam::123456789012:user/breakglass");
    }
    home.assert_no_secret(&[
        ("the new long-term secret", new_secret.expose_secret()),
        ("the old long-term secret", old_secret.expose_secret()),
    ]);
}

#[test]
fn rotate_finish_now_retires_a_staged_old_key_on_the_day_of_the_rotation() {
    let test = "rotate_finish_now_retires_a_staged_old_key_on_the_day_of_the_rotation";
    if !pcsc_ready(test) {
        return;
    }
    let token = SoftToken::approve(1);
    let r = token.reader();
    let sts = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let home = Home::new();
    let old = enrol(&home, &sts, &r);
    rotate(&home, &r, &[], &[]).ok();
    let (new, _) = vault_key(&home);
    let mut both = vec![(old.clone(), "Active"), (new.clone(), "Active")];
    both.sort();
    let mut listed = keys(&sts);
    listed.sort();
    assert_eq!(listed, both);
    // On day 0 `--finish` alone has nothing due; `--finish --now` retires the old key.
    let o = run(&home, &["rotate", "prod", "--finish"]);
    assert!(stdout(&o).contains("Nothing is due yet"), "{}", stdout(&o));
    home.skip_ahead(Some(&sts), 60);
    let out = rotate(&home, &r, &["--finish", "--now"], &[])
        .ok()
        .to_owned();
    assert!(out.contains("Deleted the old key"), "{out}");
    assert_eq!(keys(&sts), vec![(new, "Active")]);
}

#[test]
fn rotate_now_retires_the_old_key_at_once_and_the_check_sees_a_stale_copy() {
    let test = "rotate_now_retires_the_old_key_at_once_and_the_check_sees_a_stale_copy";
    if !pcsc_ready(test) {
        return;
    }
    let token = SoftToken::approve(1);
    let r = token.reader();
    let sts = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let home = Home::new();
    let old = enrol(&home, &sts, &r);
    let copy = std::fs::read(home.vault("prod")).unwrap();
    // The security team hears the rotation (and its activation) at a webhook.
    let hooks = tempfile::tempdir().unwrap();
    let hook = common::hooks::Receiver::start(hooks.path(), &[200]);
    let mut config = std::fs::read_to_string(home.config_file()).unwrap();
    config += &hook.webhook_table("prod");
    std::fs::write(home.config_file(), config).unwrap();

    let out = rotate(&home, &r, &["--now"], &[]).ok().to_owned();
    let (new, _) = vault_key(&home);
    assert_eq!(keys(&sts), vec![(new.clone(), "Active")]);
    assert!(out.contains("Deactivated the old key"), "{out}");
    assert!(out.contains("Deleted the old key"), "{out}");
    assert!(out.contains("No old key is left in IAM"), "{out}");
    let events: Vec<Value> = hook
        .bodies()
        .into_iter()
        .map(|b| b["breakglass"].clone())
        .collect();
    let names: Vec<&str> = events
        .iter()
        .map(|b| b["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["activation attempt", "activation granted", "key rotation"]
    );
    let told = &events[2];
    let detail = told["detail"].as_str().unwrap();
    assert!(
        detail.contains(&breakglass::secure::mask_key_id(&new))
            && detail.contains("Deleted the old key")
            && !detail.contains(&new),
        "{detail}"
    );
    assert_eq!(told["reason"], "quarterly rotation");
    assert_eq!(
        (&told["password_holder"], &told["token_holder"]),
        (&"Alice".into(), &"Bob".into())
    );
    // Its head is the chain's after the rotation's last record.
    let audit = home.audit();
    let last_rotation = audit
        .lines()
        .rfind(|l| l.contains("\"event\":\"key rotation\""))
        .unwrap();
    assert_eq!(
        told["audit_head"],
        data_encoding::HEXLOWER
            .encode(ring::digest::digest(&ring::digest::SHA256, last_rotation.as_bytes()).as_ref())
    );

    // The copy taken before the rotation: `--check` says it is stale.
    let rotated = std::fs::read(home.vault("prod")).unwrap();
    std::fs::write(home.vault("prod"), &copy).unwrap();
    let o = run(&home, &["rotate", "--check"]);
    assert_eq!(o.status.code(), Some(6), "{}", stdout(&o));
    assert!(stdout(&o).contains("stale copy"), "{}", stdout(&o));
    // With an auditor's credentials it also reads IAM: the copy's key is gone there.
    let (admin_id, admin_secret) = sts.admin_key();
    let mut cmd = home.command(&["rotate", "--check", "prod"]);
    cmd.env("AWS_ACCESS_KEY_ID", &admin_id)
        .env("AWS_SECRET_ACCESS_KEY", admin_secret.expose_secret());
    let o = run_with_input(cmd, None);
    assert_eq!(o.status.code(), Some(6), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("AWS says nothing about the vault's key"),
        "{}",
        stdout(&o)
    );
    // The rotated vault back: nothing to report, and AWS says when its key was last used.
    std::fs::write(home.vault("prod"), &rotated).unwrap();
    let mut cmd = home.command(&["rotate", "--check", "prod"]);
    cmd.env("AWS_ACCESS_KEY_ID", &admin_id)
        .env("AWS_SECRET_ACCESS_KEY", admin_secret.expose_secret());
    let o = run_with_input(cmd, None);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("the vault's key was last used"),
        "{}",
        stdout(&o)
    );
    let _ = old;
}

#[test]
fn a_second_key_or_a_key_that_never_works_changes_nothing() {
    let test = "a_second_key_or_a_key_that_never_works_changes_nothing";
    if !pcsc_ready(test) {
        return;
    }
    let token = SoftToken::approve(0);
    let r = token.reader();
    let sts = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let home = Home::new();
    let old = enrol(&home, &sts, &r);
    let before = std::fs::read(home.vault("prod")).unwrap();

    // Someone else made a second key: refused, named, nothing changed.
    let (intruder, _) = sts.create_access_key("breakglass");
    let ran = rotate(&home, &r, &[], &[]);
    assert_eq!(ran.code(), Some(4), "{}", ran.out);
    assert!(
        ran.out.contains("second access key") && ran.out.contains("someone else made it"),
        "{}",
        ran.out
    );
    assert!(ran.out.contains("next: "), "{}", ran.out);
    assert_eq!(std::fs::read(home.vault("prod")).unwrap(), before);
    assert_eq!(keys(&sts).len(), 2);
    sts.delete_access_key(&intruder);

    // The new key never starts working: deleted, vault unchanged, nothing left to finish.
    sts.set_key_propagation(3_600);
    home.skip_ahead(Some(&sts), 30);
    let ran = rotate(&home, &r, &["--propagation-timeout", "1"], &[]);
    assert_eq!(ran.code(), Some(3), "{}", ran.out);
    assert!(ran.out.contains("still did not work"), "{}", ran.out);
    assert_eq!(keys(&sts), vec![(old.clone(), "Active")]);
    assert_eq!(std::fs::read(home.vault("prod")).unwrap(), before);
    assert!(!home
        .files()
        .iter()
        .any(|(p, _)| p.to_string_lossy().contains("rotations/prod.json")));
    let recs = rotation_records(&home);
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(recs[0]["step"], "orphan key deleted");
}

/// Kills `rotate --now` at every step, then runs it again: the vault always opens with a key
/// that works, IAM never holds more than one orphan, and the second run finishes the rotation
/// (or undoes it and rotates afresh), ending with one key, the vault's.
fn kill_at_every_step(backend: &str, slot: u16) {
    for point in CRASH_POINTS {
        // A fresh token each time: enrolment writes its accounts.
        let token = SoftToken::approve(slot);
        let r = token.reader();
        let home = Home::new();
        let (sts, moto, old);
        match backend {
            "emulator" => {
                let s = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
                old = enrol(&home, &s, &r);
                sts = Some(s);
                moto = None;
            }
            _ => {
                let Some(m) = Moto::start("kill_at_every_step (moto)") else {
                    return;
                };
                let rt = rt();
                let user = m.breakglass_user(&rt);
                enroll_imported(
                    &home,
                    "prod",
                    &m.endpoint,
                    &r,
                    &user.mfa_serial,
                    (&user.key_id, &user.secret, &user.seed),
                );
                old = user.key_id.clone();
                moto = Some((m, user, rt));
                sts = None;
            }
        }
        let list = || -> Vec<(String, String)> {
            match (&sts, &moto) {
                (Some(s), _) => keys(s)
                    .into_iter()
                    .map(|(k, st)| (k, st.to_owned()))
                    .collect(),
                (_, Some((_, user, rt))) => {
                    let out = rt
                        .block_on(user.iam.list_access_keys().user_name("breakglass").send())
                        .unwrap();
                    let mut v: Vec<(String, String)> = out
                        .access_key_metadata
                        .into_iter()
                        .map(|k| {
                            (
                                k.access_key_id.unwrap(),
                                k.status.unwrap().as_str().to_owned(),
                            )
                        })
                        .collect();
                    v.sort();
                    v
                }
                _ => unreachable!(),
            }
        };
        let ran = rotate(&home, &r, &["--now"], &[("BREAKGLASS_CRASH_AT", point)]);
        assert!(
            ran.end.contains("SIGKILL"),
            "{backend} {point}: not killed: {}\n{}",
            ran.end,
            ran.out
        );
        // The vault on disk opens with a key IAM holds and accepts.
        let facts = Vault::from_bytes(&std::fs::read(home.vault("prod")).unwrap())
            .unwrap()
            .key_facts()
            .map(|k| k.access_key_id.clone())
            .unwrap_or_else(|| old.clone());
        let now = list();
        assert!(
            now.iter().any(|(k, s)| *k == facts && s == "Active")
                || (*point == "after-delete" && now.len() == 1),
            "{backend} {point}: the vault's key {facts} is not active in IAM: {now:?}"
        );
        assert!(now.len() <= 2, "{backend} {point}: {now:?}");

        if let Some(s) = &sts {
            home.skip_ahead(Some(s), 30);
            // An activation meanwhile works, and says the rotation is unfinished.
            if !point.starts_with("after-de") {
                let out = unlock(&home, "prod", &r, ("Alice", "Bob"), PASSPHRASE);
                assert!(out.contains("\"Version\":1"), "{backend} {point}: {out}");
                assert!(
                    out.contains("a key rotation of this profile stopped"),
                    "{backend} {point}: {out}"
                );
                run(&home, &["lock", "prod"]);
                home.skip_ahead(Some(s), 30);
            }
        }
        let again = rotate(&home, &r, &["--now"], &[]);
        let out = again.ok();
        if *point != "after-delete" && *point != "after-deactivate" {
            assert!(
                out.contains("An earlier rotation of this profile stopped at step"),
                "{backend} {point}: {out}"
            );
        } else {
            assert!(out.contains("going on with it"), "{backend} {point}: {out}");
        }
        let (vault_now, _) = vault_key(&home);
        assert_ne!(vault_now, old, "{backend} {point}");
        assert_eq!(
            list(),
            vec![(vault_now.clone(), "Active".to_owned())],
            "{backend} {point}: {out}"
        );
        assert!(!breakglass::ceremony::rotate::previous_path(&home.vault("prod")).exists());
        let o = run(&home, &["rotate", "--check"]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{backend} {point}: {}",
            stdout(&o)
        );
        // A vault that opens and a key that works: the next activation succeeds.
        if let Some(s) = &sts {
            home.skip_ahead(Some(s), 30);
            let out = unlock(&home, "prod", &r, ("Alice", "Bob"), PASSPHRASE);
            assert!(out.contains("\"Version\":1"), "{backend} {point}: {out}");
        }
    }
}

#[test]
fn a_rotation_killed_at_every_step_is_finished_or_undone_on_the_emulator() {
    if !pcsc_ready("a_rotation_killed_at_every_step_is_finished_or_undone_on_the_emulator") {
        return;
    }
    kill_at_every_step("emulator", 1);
}

#[test]
fn a_rotation_killed_at_every_step_is_finished_or_undone_on_moto() {
    if !pcsc_ready("a_rotation_killed_at_every_step_is_finished_or_undone_on_moto") {
        return;
    }
    kill_at_every_step("moto", 0);
}

/// IAM refusing CreateAccessKey: the message names the action and the policy statement, and
/// nothing changes. IAM refusing to delete a new key that never worked: the journal keeps it,
/// and the next run deletes the orphan before it rotates. A vault that cannot be replaced:
/// the new key is deleted again and the old vault stays.
#[test]
fn iam_refusals_and_an_unwritable_vault_leave_the_previous_state() {
    let test = "iam_refusals_and_an_unwritable_vault_leave_the_previous_state";
    if !pcsc_ready(test) {
        return;
    }
    let token = SoftToken::approve(1);
    let r = token.reader();
    let sts = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let home = Home::new();
    let old = enrol(&home, &sts, &r);
    let before = std::fs::read(home.vault("prod")).unwrap();
    let journal = home
        .config_file()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("state/breakglass/rotations/prod.json");

    sts.deny("breakglass", "CreateAccessKey");
    let ran = rotate(&home, &r, &[], &[]);
    assert_eq!(ran.code(), Some(4), "{}", ran.out);
    for needle in [
        "not authorized to perform: iam:CreateAccessKey",
        "next: the break-glass user needs iam:CreateAccessKey on itself",
        "\"aws:MultiFactorAuthPresent\": \"true\"",
        "nothing was changed",
    ] {
        assert!(ran.out.contains(needle), "{needle:?} missing:\n{}", ran.out);
    }
    assert_eq!(keys(&sts), vec![(old.clone(), "Active")]);
    assert_eq!(std::fs::read(home.vault("prod")).unwrap(), before);
    assert!(
        !journal.exists(),
        "a refused CreateAccessKey made nothing to recover"
    );
    sts.allow_all();

    // The new key never works and IAM refuses to delete it: the journal keeps the orphan.
    sts.set_key_propagation(3_600);
    sts.deny("breakglass", "DeleteAccessKey");
    home.skip_ahead(Some(&sts), 30);
    let ran = rotate(&home, &r, &["--propagation-timeout", "1"], &[]);
    assert_ne!(ran.code(), Some(0), "{}", ran.out);
    assert!(ran.out.contains("iam:DeleteAccessKey"), "{}", ran.out);
    assert_eq!(keys(&sts).len(), 2, "the orphan is still in IAM");
    let j = std::fs::read_to_string(&journal).unwrap();
    assert!(j.contains("\"step\": \"created\""), "{j}");
    assert_eq!(std::fs::read(home.vault("prod")).unwrap(), before);
    // `rotate --check` says a person must look.
    let o = run(&home, &["rotate", "--check"]);
    assert_eq!(o.status.code(), Some(6), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("stopped at step \"created\""),
        "{}",
        stdout(&o)
    );

    // Allowed again, the next run deletes the orphan first. The vault cannot be replaced
    // (its copy's name is taken by a directory): the new key is deleted, nothing else moves.
    sts.allow_all();
    sts.set_key_propagation(0);
    let previous = breakglass::ceremony::rotate::previous_path(&home.vault("prod"));
    std::fs::create_dir(&previous).unwrap();
    home.skip_ahead(Some(&sts), 30);
    let ran = rotate(&home, &r, &[], &[]);
    assert_eq!(ran.code(), Some(1), "{}", ran.out);
    assert!(
        ran.out
            .contains("An earlier rotation of this profile stopped at step \"created\""),
        "{}",
        ran.out
    );
    assert!(ran.out.contains("Deleted the orphan key"), "{}", ran.out);
    assert!(ran.out.contains("cannot write vault"), "{}", ran.out);
    assert_eq!(keys(&sts), vec![(old.clone(), "Active")], "{}", ran.out);
    assert_eq!(std::fs::read(home.vault("prod")).unwrap(), before);
    assert!(!journal.exists());
    let steps: Vec<Value> = rotation_records(&home)
        .iter()
        .map(|r| r["step"].clone())
        .collect();
    assert_eq!(steps, ["orphan key deleted", "orphan key deleted"]);

    // And with the way clear, the rotation goes through.
    std::fs::remove_dir(&previous).unwrap();
    home.skip_ahead(Some(&sts), 30);
    rotate(&home, &r, &[], &[]).ok();
    assert_eq!(keys(&sts).len(), 2);
    assert_ne!(vault_key(&home).0, old);
}

/// The token may leave once the vault is open: the new key is sealed with the data key, so a
/// token pulled while IAM propagates the new key does not stop the rotation.
#[test]
fn the_token_pulled_after_the_key_was_created_does_not_stop_the_rotation() {
    let test = "the_token_pulled_after_the_key_was_created_does_not_stop_the_rotation";
    if !pcsc_ready(test) {
        return;
    }
    let mut token = SoftToken::approve(0);
    let r = token.reader();
    let sts = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let home = Home::new();
    let old = enrol(&home, &sts, &r);
    sts.set_key_propagation(2);
    let mut p = pty(
        home.command(&["rotate", "prod", "--reason", "pull test", "--reader", &r]),
        30_000,
    );
    answer_ceremony(&mut p, None);
    p.exp_string("The new key does not work yet").unwrap();
    token.pull();
    let out = p.exp_eof().unwrap();
    assert!(out.contains("Sealed the new key"), "{out}");
    let (new, _) = vault_key(&home);
    assert_ne!(new, old);
    let mut expected = vec![(old, "Active"), (new, "Active")];
    expected.sort();
    assert_eq!(keys(&sts), expected);
}

/// Two rotations of one profile at once: the second is refused before anyone is asked. The
/// first, killed while it waits for IAM, is undone by the next run, which then rotates.
#[test]
fn a_second_rotation_at_once_is_refused_and_a_killed_wait_is_undone() {
    let test = "a_second_rotation_at_once_is_refused_and_a_killed_wait_is_undone";
    if !pcsc_ready(test) {
        return;
    }
    let token = SoftToken::approve(0);
    let r = token.reader();
    let sts = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let home = Home::new();
    let old = enrol(&home, &sts, &r);
    sts.set_key_propagation(3_600);
    let mut first = pty(
        home.command(&["rotate", "prod", "--reason", "first", "--reader", &r]),
        30_000,
    );
    answer_ceremony(&mut first, None);
    first.exp_string("The new key does not work yet").unwrap();

    let mut second = pty(
        home.command(&["rotate", "prod", "--reason", "second", "--reader", &r]),
        30_000,
    );
    let out = second.exp_eof().unwrap();
    assert!(
        out.contains("another ceremony that replaces this profile's vault (a rotation or a rekey) is running"),
        "{out}"
    );
    assert!(!out.contains("type your name"), "{out}");

    first
        .process_mut()
        .kill(rexpect::process::Signal::SIGKILL)
        .unwrap();
    let _ = first.process_mut().wait();
    assert_eq!(keys(&sts).len(), 2, "the killed run left its new key");
    sts.set_key_propagation(0);
    home.skip_ahead(Some(&sts), 30);
    let out = rotate(&home, &r, &[], &[]).ok().to_owned();
    assert!(out.contains("stopped at step \"created\""), "{out}");
    assert!(out.contains("Deleted the orphan key"), "{out}");
    let (new, _) = vault_key(&home);
    let mut expected = vec![(old, "Active"), (new, "Active")];
    expected.sort();
    assert_eq!(keys(&sts), expected);
}
