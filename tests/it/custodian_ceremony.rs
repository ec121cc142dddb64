//! Custodians through the real binary, pcscd and the soft token, against the sandbox's
//! emulator: `enroll --custodian … --threshold M` for 1 of 1, 2 of 3 and 3 of 5, unlocks that
//! ask each custodian in turn, and the refusals (a wrong passphrase names its custodian only,
//! a name that is no custodian, one custodian twice, a custodian as token holder).

use crate::common;

use std::net::SocketAddr;

use rexpect::session::PtySession;
use secrecy::ExposeSecret;
use serde_json::Value;

use breakglass::sandbox::sts::Sts;
use common::home::*;
use common::*;

/// Custodians and their passphrases (at least 12 characters, as enrolment asks).
const PEOPLE: [(&str, &str); 5] = [
    ("Alice", "alice's long passphrase"),
    ("Bob", "bob's long passphrase"),
    ("Carol", "carol's long passphrase"),
    ("Dan", "dan's long passphrase"),
    ("Erin", "erin's long passphrase"),
];

/// Enrols `profile` at the emulator (its own IAM user and MFA device, imported: no window is
/// used) with the first `n` of [`PEOPLE`] as custodians, any `m` of them needed.
fn enrol(home: &Home, sts: &Sts, profile: &str, reader: &str, n: usize, m: usize) -> String {
    let user = format!("bg-{profile}");
    sts.create_user(&user);
    let (key_id, secret) = sts.create_access_key(&user);
    let (serial, seed) = sts.create_mfa_device(&user, &format!("{user}-token"));
    let endpoint = sts.endpoint();
    let threshold = m.to_string();
    let mut head = vec![profile, "--import-key", "--mfa-serial", &serial];
    for (name, _) in &PEOPLE[..n] {
        head.extend(["--custodian", name]);
    }
    head.extend(["--threshold", &threshold]);
    let witnesses = tempfile::tempdir().unwrap();
    let transcript = witnesses.path().join(format!("{profile}-enrolment.md"));
    let transcript_arg = transcript.to_str().unwrap().to_owned();
    head.extend(["--transcript", &transcript_arg]);
    let cmd = home.command(&{
        let mut all = vec!["enroll"];
        all.extend(light_enrolment(&head, &endpoint, reader));
        all
    });
    let mut p = pty(cmd, 30_000);
    for line in [key_id.as_str(), secret.expose_secret(), &seed] {
        p.send_line(line).unwrap();
    }
    p.exp_string(&format!(
        "The vault will open with {m} of these {n} custodians"
    ))
    .unwrap();
    for (name, passphrase) in &PEOPLE[..n] {
        p.exp_string(&format!(
            "Custodian {name}, type your passphrase (not shown): "
        ))
        .unwrap();
        p.send_line(passphrase).unwrap();
        p.exp_string(&format!("Custodian {name}, type your passphrase again: "))
            .unwrap();
        p.send_line(passphrase).unwrap();
    }
    let out = p.exp_eof().unwrap();
    assert!(out.contains("Enrolled "), "enrolment failed:\n{out}");
    // The witnesses' transcript names every custodian who chose a passphrase.
    let t = std::fs::read_to_string(&transcript).unwrap();
    for (name, _) in &PEOPLE[..n] {
        assert!(t.contains(&format!("{name} (custodian): ____")), "{t}");
    }
    out
}

/// Starts `unlock PROFILE` on a pty and answers as the custodians `who` (name, passphrase),
/// in order, then the token holder, as far as the command asks; returns all it printed.
fn unlock(home: &Home, profile: &str, reader: &str, who: &[(&str, &str)], token: &str) -> String {
    let mut p = pty(
        home.command(&[
            "unlock",
            profile,
            "--reason",
            "custodian drill",
            "--print-json",
            "--reader",
            reader,
        ]),
        30_000,
    );
    let mut out = String::new();
    let vault =
        breakglass::vault::Vault::from_bytes(&std::fs::read(home.vault(profile)).unwrap()).unwrap();
    let needed = vault.custodians().unwrap().0;
    for (i, (name, passphrase)) in who.iter().enumerate() {
        let ask = format!("Custodian {} of {needed} needed: type your name: ", i + 1);
        if !expect(&mut p, &ask, &mut out) {
            return out;
        }
        p.send_line(name).unwrap();
        if !expect(&mut p, "type your passphrase (not shown): ", &mut out) {
            return out;
        }
        p.send_line(passphrase).unwrap();
    }
    if expect(&mut p, "Token holder, type your name: ", &mut out) {
        p.send_line(token).unwrap();
        out += &p.exp_eof().unwrap();
    }
    out
}

/// Waits for `prompt`; false (with the rest of the output in `out`) when the command ended.
fn expect(p: &mut PtySession, prompt: &str, out: &mut String) -> bool {
    match p.exp_string(prompt) {
        Ok(before) => {
            *out += &before;
            *out += prompt;
            true
        }
        Err(rexpect::error::Error::EOF { got, .. }) => {
            *out += &got;
            false
        }
        Err(e) => panic!("{e}\n{out}"),
    }
}

/// Ends the agent's session of `profile`, so that the next unlock is a ceremony again.
fn lock(home: &Home, profile: &str) {
    let o = home.command(&["lock", profile]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// An unlock that must run the ceremony and succeed; the session is locked again after it.
fn opens(home: &Home, profile: &str, reader: &str, who: &[(&str, &str)]) {
    let out = unlock(home, profile, reader, who, "Trent");
    assert!(!out.contains("already unlocked"), "{out}");
    session_json(&out);
    lock(home, profile);
}

fn people(idx: &[usize]) -> Vec<(&'static str, &'static str)> {
    idx.iter().map(|i| PEOPLE[*i]).collect()
}

/// The last `activation` record of `profile`.
fn activation(home: &Home, profile: &str) -> Value {
    home.audit()
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|r| r["event"] == "activation" && r["profile"] == profile)
        .expect("an activation record")
}

#[test]
fn custodians_one_of_one_two_of_three_three_of_five_unlock_through_pcscd() {
    let test = "custodians_one_of_one_two_of_three_three_of_five_unlock_through_pcscd";
    if !pcsc_ready(test) {
        return;
    }
    let token = SoftToken::approve(0);
    let r = token.reader();
    let sts = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let home = Home::new();
    for (profile, n, m, present) in [
        ("one", 1, 1, vec![0]),
        ("three", 3, 2, vec![2, 0]),
        ("five", 5, 3, vec![4, 1, 3]),
    ] {
        enrol(&home, &sts, profile, &r, n, m);
        let vault =
            breakglass::vault::Vault::from_bytes(&std::fs::read(home.vault(profile)).unwrap())
                .unwrap();
        assert_eq!(vault.version(), 3);
        assert_eq!(vault.custodians().unwrap().0 as usize, m);
        let out = unlock(&home, profile, &r, &people(&present), "Trent");
        assert!(!out.contains("already unlocked"), "{out}");
        let session = session_json(&out);
        assert!(
            session["AccessKeyId"].as_str().unwrap().starts_with("ASIA"),
            "{out}"
        );
        assert!(
            out.contains(&format!("This vault opens with {m} of its {n} custodians")),
            "{out}"
        );
        let rec = activation(&home, profile);
        assert_eq!(rec["outcome"], "success", "{rec}");
        let names: Vec<&str> = present.iter().map(|i| PEOPLE[*i].0).collect();
        assert_eq!(rec["custodians"], serde_json::json!(names), "{rec}");
        assert_eq!(rec["password_holder"], names.join("+"));
        assert_eq!(rec["token_holder"], "Trent");
    }
    // No passphrase of any custodian in any file the project wrote.
    let secrets: Vec<(&str, &str)> = PEOPLE.iter().map(|(n, p)| (*n, *p)).collect();
    home.assert_no_secret(&secrets);
}

#[test]
fn custodian_refusals_name_the_cause_and_the_person() {
    let test = "custodian_refusals_name_the_cause_and_the_person";
    if !pcsc_ready(test) {
        return;
    }
    let token = SoftToken::approve(1);
    let r = token.reader();
    let sts = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let home = Home::new();
    enrol(&home, &sts, "prod", &r, 3, 2);
    // `status` says who opens it, from the clear header.
    let o = home.command(&["status"]).output().unwrap();
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(
        said.contains("profile \"prod\": the vault (format 3) opens with 2 of its 3 custodians (Alice, Bob, Carol) and a token: slots 0 \"primary\" (oath)"),
        "{said}"
    );

    // A wrong passphrase: that custodian is named, the other is not; it is found before the
    // MFA code is read, so no window is spent and nothing reaches STS.
    let calls = sts.counts();
    let windows = std::fs::read(home.state_file("mfa-windows.json")).ok();
    let out = unlock(
        &home,
        "prod",
        &r,
        &[
            ("Alice", PEOPLE[0].1),
            ("Carol", "carol's WRONG passphrase"),
        ],
        "Trent",
    );
    assert!(
        out.contains("custodian \"Carol\"'s passphrase did not open their share"),
        "{out}"
    );
    assert!(!out.contains("\"Alice\"'s passphrase"), "{out}");
    assert_eq!(sts.counts(), calls);
    assert_eq!(
        std::fs::read(home.state_file("mfa-windows.json")).ok(),
        windows
    );
    let rec = activation(&home, "prod");
    assert!(
        rec["outcome"].as_str().unwrap().starts_with("failure"),
        "{rec}"
    );

    // Custodian sets the enrolment refuses before anything is asked or read (exit 2).
    for (set, said) in [
        (
            &[
                "--custodian",
                "Alice",
                "--custodian",
                "ALICE",
                "--threshold",
                "1",
            ][..],
            "are one person once normalised",
        ),
        (
            &["--custodian", "Alice", "--custodian", "Bob"][..],
            "not how many must be present",
        ),
        (
            &[
                "--custodian",
                "Alice",
                "--custodian",
                "Bob",
                "--threshold",
                "3",
            ][..],
            "must be 1 to 2",
        ),
    ] {
        let mut args = vec![
            "enroll",
            "other",
            "--import-key",
            "--mfa-serial",
            "arn:aws:iam::123456789012:mfa/x",
        ];
        args.extend_from_slice(set);
        let o = home
            .command(&args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(said), "{err}");
    }

    // A name that is no custodian ends it before any passphrase, listing the custodians.
    let out = unlock(&home, "prod", &r, &[("Mallory", "x")], "Trent");
    assert!(
        out.contains("\"Mallory\" is not a custodian of this vault (its custodians: \"Alice\", \"Bob\", \"Carol\")"),
        "{out}"
    );
    assert!(
        !out.contains("Custodian Mallory, type your passphrase"),
        "{out}"
    );

    // The same custodian twice, even spelt another way.
    let out = unlock(
        &home,
        "prod",
        &r,
        &[("Bob", PEOPLE[1].1), ("BOB", PEOPLE[1].1)],
        "Trent",
    );
    assert!(out.contains("custodian \"Bob\" was given twice"), "{out}");

    // A custodian as the token holder, present or not.
    for token_holder in ["alice", "Bob"] {
        let out = unlock(&home, "prod", &r, &people(&[0, 2]), token_holder);
        assert!(
            out.contains(&format!("the token holder \"{token_holder}\" is custodian")),
            "{out}"
        );
    }
    // None of these used an MFA window or the token's seal: a good quorum opens at once.
    opens(&home, "prod", &r, &people(&[1, 2]));
}

/// `breakglass ARGS` on a pty, answering each `(prompt, answer)` in turn as far as the command
/// asks; returns all it printed and how it ended.
fn converse(
    home: &Home,
    args: &[&str],
    answers: &[(&str, &str)],
    env: &[(&str, &str)],
) -> (String, String) {
    let mut cmd = home.command(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut p = pty(cmd, 30_000);
    let mut out = String::new();
    for (ask, answer) in answers {
        if !expect(&mut p, ask, &mut out) {
            let end = format!("{:?}", p.process().wait().unwrap());
            return (out, end);
        }
        p.send_line(answer).unwrap();
    }
    out += &p.exp_eof().unwrap();
    let end = format!("{:?}", p.process().wait().unwrap());
    (out, end)
}

/// The prompts and answers of custodians `who` opening the vault, then token holder Trent.
fn quorum(who: &[usize], needed: usize) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, c) in who.iter().enumerate() {
        let (name, passphrase) = PEOPLE[*c];
        out.push((
            format!("Custodian {} of {needed} needed: type your name: ", i + 1),
            name.to_owned(),
        ));
        out.push((
            format!("Custodian {name}, type your passphrase (not shown): "),
            passphrase.to_owned(),
        ));
    }
    out.push(("Token holder, type your name: ".into(), "Trent".into()));
    out
}

/// A new passphrase typed twice by custodian `name`.
fn new_passphrase(name: &str, passphrase: &str) -> Vec<(String, String)> {
    vec![
        (
            format!("Custodian {name}, type your passphrase (not shown): "),
            passphrase.to_owned(),
        ),
        (
            format!("Custodian {name}, type your passphrase again: "),
            passphrase.to_owned(),
        ),
    ]
}

fn refs(v: &[(String, String)]) -> Vec<(&str, &str)> {
    v.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect()
}

fn rekey_records(home: &Home) -> Vec<Value> {
    home.audit()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["event"] == "rekey")
        .collect()
}

/// 2 of 3 → Carol leaves, Dan joins (Alice and Bob present keep theirs); then Bob changes his
/// passphrase. Each time the new people unlock, the old ones are refused, the record names
/// what changed, and no AWS call is made.
#[test]
fn rekey_replaces_a_custodian_and_changes_a_passphrase_without_aws() {
    let test = "rekey_replaces_a_custodian_and_changes_a_passphrase_without_aws";
    if !pcsc_ready(test) {
        return;
    }
    let token = SoftToken::approve(0);
    let r = token.reader();
    let sts = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let home = Home::new();
    enrol(&home, &sts, "prod", &r, 3, 2);
    // The security team hears the rekey at a webhook.
    let hooks = tempfile::tempdir().unwrap();
    let hook = common::hooks::Receiver::start(hooks.path(), &[200]);
    let mut config = std::fs::read_to_string(home.config_file()).unwrap();
    config += &hook.webhook_table("prod");
    std::fs::write(home.config_file(), config).unwrap();
    let old_copy = std::fs::read(home.vault("prod")).unwrap();
    let calls = sts.counts();
    let transcript = home.config_file().with_file_name("rekey.md");
    let mut answers = quorum(&[0, 1], 2);
    answers.extend(new_passphrase("Dan", PEOPLE[3].1));
    let (out, end) = converse(
        &home,
        &[
            "rekey",
            "prod",
            "--custodian",
            "Alice",
            "--custodian",
            "Bob",
            "--custodian",
            "Dan",
            "--threshold",
            "2",
            "--reason",
            "Carol left the company",
            "--reader",
            &r,
            "--transcript",
            transcript.to_str().unwrap(),
        ],
        &refs(&answers),
        &[],
    );
    assert!(
        end.contains("Exited") && end.ends_with(", 0)"),
        "{end}\n{out}"
    );
    assert!(out.contains("changed:   custodian Carol removed"), "{out}");
    assert!(out.contains("changed:   custodian Dan added"), "{out}");
    assert!(out.contains("unchanged: the key slots"), "{out}");
    assert!(out.contains("breakglass rotate prod --now"), "{out}");
    assert_eq!(sts.counts(), calls, "rekey sends nothing to AWS");
    let rec = rekey_records(&home).pop().unwrap();
    assert_eq!(rec["outcome"], "success", "{rec}");
    assert_eq!(rec["custodians"], serde_json::json!(["Alice", "Bob"]));
    assert_eq!(rec["token_holder"], "Trent");
    let bodies = hook.bodies();
    assert_eq!(bodies.len(), 1, "{bodies:#?}");
    let told = &bodies[0]["breakglass"];
    assert_eq!(told["event"], "rekey");
    assert_eq!(told["custodians"], serde_json::json!(["Alice", "Bob"]));
    assert_eq!(told["token_holder"], "Trent");
    assert_eq!(told["reason"], "Carol left the company");
    let detail = told["detail"].as_str().unwrap();
    assert!(
        detail.contains("custodian Carol removed") && detail.contains("custodian Dan added"),
        "{detail}"
    );
    let t = std::fs::read_to_string(&transcript).unwrap();
    assert!(
        t.contains("custodian Dan added") && t.contains("Alice (custodian)"),
        "{t}"
    );
    assert!(!home.vault("prod").with_extension("vault.previous").exists());

    // Dan and Alice open it; Carol is no custodian any more.
    opens(&home, "prod", &r, &people(&[3, 0]));
    let out = unlock(&home, "prod", &r, &people(&[2]), "Trent");
    assert!(out.contains("\"Carol\" is not a custodian"), "{out}");

    // Bob's new passphrase: Bob and Dan open, Bob's old passphrase is refused naming him.
    home.skip_ahead(Some(&sts), 60);
    let mut answers = quorum(&[1, 3], 2);
    answers.extend(new_passphrase("Bob", "bob's brand new passphrase"));
    let (out, end) = converse(
        &home,
        &[
            "rekey",
            "prod",
            "--passphrase",
            "Bob",
            "--reason",
            "yearly change",
            "--reader",
            &r,
        ],
        &refs(&answers),
        &[],
    );
    assert!(end.ends_with(", 0)"), "{end}\n{out}");
    assert!(
        out.contains("changed:   custodian Bob's passphrase changed"),
        "{out}"
    );
    opens(
        &home,
        "prod",
        &r,
        &[("Bob", "bob's brand new passphrase"), PEOPLE[3]],
    );
    home.skip_ahead(Some(&sts), 60);
    let out = unlock(&home, "prod", &r, &[PEOPLE[1], PEOPLE[3]], "Trent");
    assert!(
        out.contains("custodian \"Bob\"'s passphrase did not open their share"),
        "{out}"
    );
    home.assert_no_secret(&[("Bob's new passphrase", "bob's brand new passphrase")]);

    // Refusals before anyone is asked anything: no change, a slot that is not there, a
    // passphrase change for someone absent, the token holder among the new custodians.
    let (out, _) = converse(&home, &["rekey", "prod", "--reader", &r], &[], &[]);
    assert!(out.contains("rekey was given no change"), "{out}");
    let (out, _) = converse(
        &home,
        &[
            "rekey",
            "prod",
            "--remove-token",
            "spare",
            "--reason",
            "x",
            "--reader",
            &r,
        ],
        &[],
        &[],
    );
    assert!(
        out.contains("the vault has no key slot \"spare\" (its slots: 0 \"primary\""),
        "{out}"
    );
    let answers = quorum(&[0, 3], 2);
    let (out, _) = converse(
        &home,
        &[
            "rekey",
            "prod",
            "--passphrase",
            "Bob",
            "--reason",
            "x",
            "--reader",
            &r,
        ],
        &refs(&answers),
        &[],
    );
    assert!(
        out.contains("custodian \"Bob\" is not among the custodians present"),
        "{out}"
    );
    let answers = quorum(&[0, 3], 2);
    let (out, _) = converse(
        &home,
        &[
            "rekey",
            "prod",
            "--custodian",
            "Alice",
            "--custodian",
            "Trent",
            "--threshold",
            "1",
            "--reason",
            "x",
            "--reader",
            &r,
        ],
        &refs(&answers),
        &[],
    );
    assert!(
        out.contains("the token holder \"Trent\" is custodian \"Trent\""),
        "{out}"
    );
    let failures = rekey_records(&home)
        .iter()
        .filter(|r| r["outcome"].as_str().unwrap_or("").starts_with("failure"))
        .count();
    assert_eq!(
        failures, 3,
        "every refused ceremony leaves a record (the flag refused before it began does not)"
    );

    // The old copy still opens with Carol (a rekey cannot reach copies) until the key is
    // rotated at once, with the new custodians: then what it holds is refused by AWS.
    home.skip_ahead(Some(&sts), 60);
    let (out, end) = converse(
        &home,
        &[
            "rotate",
            "prod",
            "--now",
            "--reason",
            "Carol left",
            "--reader",
            &r,
        ],
        &refs(&quorum(&[0, 3], 2)),
        &[],
    );
    assert!(end.ends_with(", 0)"), "{end}\n{out}");
    let vault = home.vault("prod");
    let rotated = std::fs::read(&vault).unwrap();
    breakglass::files::atomic_write(&vault, &old_copy).unwrap();
    home.skip_ahead(Some(&sts), 60);
    let out = unlock(&home, "prod", &r, &people(&[2, 0]), "Trent");
    assert!(
        out.contains("AWS does not accept the access key") && !out.contains("\"AccessKeyId\""),
        "the old copy's key is deleted: {out}"
    );
    breakglass::files::atomic_write(&vault, &rotated).unwrap();
}

/// A vault with one passphrase and two tokens becomes 1 of 2 custodians: the password holder
/// keeps her passphrase, Bob chooses his, and the backup token (in the other reader) is
/// sealed again. Then the backup's slot is removed: the primary opens, the backup no longer.
#[test]
fn rekey_upgrades_a_vault_and_removes_a_token_with_the_others_at_hand() {
    let test = "rekey_upgrades_a_vault_and_removes_a_token_with_the_others_at_hand";
    if !pcsc_ready(test) {
        return;
    }
    let primary = SoftToken::approve(0);
    let backup = SoftToken::approve(1);
    let (pr, br) = (primary.reader(), backup.reader());
    let sts = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let home = Home::new();
    enrol_at_emulator(&home, &sts, "prod", &pr);
    let (admin_id, admin_secret) = sts.admin_key();
    let admin = [
        ("AWS_ACCESS_KEY_ID", admin_id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", admin_secret.expose_secret()),
    ];
    let (out, end) = converse(
        &home,
        &[
            "rekey",
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
        ],
        &[(
            "Password holder, type the vault passphrase (not shown): ",
            PASSPHRASE,
        )],
        &admin,
    );
    assert!(out.contains("Token added to "), "{end}\n{out}");
    let old_copy = std::fs::read(home.vault("prod")).unwrap();

    // Without the backup at hand the upgrade stops before writing, naming the slot.
    let v2_answers = [
        ("Password holder, type your name: ", "Alice"),
        ("Token holder, type your name: ", "Trent"),
        (
            "Password holder, type the vault passphrase (not shown): ",
            PASSPHRASE,
        ),
        (
            "Custodian Bob, type your passphrase (not shown): ",
            PEOPLE[1].1,
        ),
        ("Custodian Bob, type your passphrase again: ", PEOPLE[1].1),
    ];
    let upgrade = [
        "rekey",
        "prod",
        "--upgrade",
        "--custodian",
        "Alice",
        "--custodian",
        "Bob",
        "--threshold",
        "1",
        "--reason",
        "custodians",
        "--reader",
        &pr,
    ];
    let (out, _) = converse(&home, &upgrade, &v2_answers, &[]);
    assert!(
        out.contains("key slot 1 (\"backup\") stays and must be sealed again"),
        "{out}"
    );
    assert_eq!(
        std::fs::read(home.vault("prod")).unwrap(),
        old_copy,
        "nothing written"
    );

    let mut with_backup = upgrade.to_vec();
    with_backup.extend(["--other-reader", &br]);
    let (out, end) = converse(&home, &with_backup, &v2_answers, &[]);
    assert!(end.ends_with(", 0)"), "{end}\n{out}");
    assert!(
        out.contains("converted to custodians (vault format 3): 1 of 2 needed: Alice, Bob"),
        "{out}"
    );
    let v =
        breakglass::vault::Vault::from_bytes(&std::fs::read(home.vault("prod")).unwrap()).unwrap();
    assert_eq!(v.version(), 3);
    // Alice with the old passphrase and the primary; Bob with the backup.
    opens(&home, "prod", &pr, &[("Alice", PASSPHRASE)]);
    home.skip_ahead(Some(&sts), 60);
    opens(&home, "prod", &br, &[PEOPLE[1]]);

    // The token that opens cannot remove itself while another slot stays.
    let (out, _) = converse(
        &home,
        &[
            "rekey",
            "prod",
            "--remove-token",
            "primary",
            "--reason",
            "x",
            "--reader",
            &pr,
        ],
        &refs(&quorum(&[1], 1)),
        &[],
    );
    assert!(
        out.contains("is the one whose token opened the vault"),
        "{out}"
    );

    // The backup's slot goes; the primary, which opens, needs no other token.
    let mut answers = quorum(&[1], 1);
    answers.truncate(3);
    let (out, end) = converse(
        &home,
        &[
            "rekey",
            "prod",
            // By its MFA device, as `status` and the error list show it.
            "--remove-token",
            "arn:aws:iam::123456789012:mfa/breakglass-backup",
            "--reason",
            "backup token lost",
            "--reader",
            &pr,
        ],
        &refs(&answers),
        &[],
    );
    assert!(end.ends_with(", 0)"), "{end}\n{out}");
    assert!(
        out.contains("changed:   key slot 1 (\"backup\") removed"),
        "{out}"
    );
    assert!(out.contains("including those just removed"), "{out}");
    home.skip_ahead(Some(&sts), 60);
    let out = unlock(&home, "prod", &br, &[PEOPLE[1]], "Trent");
    assert!(out.contains("not enrolled in this vault"), "{out}");
    home.skip_ahead(Some(&sts), 60);
    opens(&home, "prod", &pr, &[PEOPLE[1]]);
    // The last slot cannot go, and says what to do.
    let (out, _) = converse(
        &home,
        &[
            "rekey",
            "prod",
            "--remove-token",
            "primary",
            "--reason",
            "x",
            "--reader",
            &pr,
        ],
        &refs(&quorum(&[1], 1)),
        &[],
    );
    assert!(
        out.contains("the last key slot cannot be removed") && out.contains("--add-token"),
        "{out}"
    );
}

/// A rekey killed at each step leaves a vault that opens, with the old custodians or the new
/// ones, never neither; the next rekey runs and removes the copy left behind.
#[test]
fn a_rekey_killed_at_every_step_leaves_the_old_vault_or_the_new() {
    let test = "a_rekey_killed_at_every_step_leaves_the_old_vault_or_the_new";
    if !pcsc_ready(test) {
        return;
    }
    let token = SoftToken::approve(1);
    let r = token.reader();
    let sts = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let home = Home::new();
    enrol(&home, &sts, "prod", &r, 2, 1);
    let mut current = ["Alice", "Bob"];
    for point in breakglass::ceremony::rekey::CRASH_POINTS {
        // Alternately drop and restore Carol: the set differs from the one in place.
        let next: [&str; 2] = if current[1] == "Bob" {
            ["Alice", "Carol"]
        } else {
            ["Alice", "Bob"]
        };
        let mut answers = quorum(&[0], 1);
        if next[1] == "Carol" {
            answers.extend(new_passphrase("Carol", PEOPLE[2].1));
        } else {
            answers.extend(new_passphrase("Bob", PEOPLE[1].1));
        }
        let (out, end) = converse(
            &home,
            &[
                "rekey",
                "prod",
                "--custodian",
                next[0],
                "--custodian",
                next[1],
                "--threshold",
                "1",
                "--reason",
                "drill",
                "--reader",
                &r,
            ],
            &refs(&answers),
            &[("BREAKGLASS_CRASH_AT", point)],
        );
        assert!(end.contains("SIGKILL"), "{point}: {end}\n{out}");
        if *point == "rekey-after-previous" {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(home.vault("prod").with_extension("vault.previous"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "the copy is private");
        }
        let v = breakglass::vault::Vault::from_bytes(&std::fs::read(home.vault("prod")).unwrap())
            .unwrap();
        let names: Vec<String> = v
            .custodians()
            .unwrap()
            .1
            .iter()
            .map(|m| m.name.clone())
            .collect();
        let expected: &[&str] = if *point == "rekey-after-vault" {
            &next
        } else {
            &current
        };
        assert_eq!(names, expected, "{point}");
        // It opens, with whoever is in it now.
        home.skip_ahead(Some(&sts), 60);
        let who = if expected[1] == "Carol" { 2 } else { 1 };
        opens(&home, "prod", &r, &people(&[who]));
        current = [expected[0], expected[1]];
    }
    // The next rekey notes the copy left behind and removes it.
    let previous = home.vault("prod").with_extension("vault.previous");
    assert!(previous.exists());
    let who = if current[1] == "Carol" { 2 } else { 1 };
    let mut answers = quorum(&[who], 1);
    answers.extend(new_passphrase("Dan", PEOPLE[3].1));
    let (out, end) = converse(
        &home,
        &[
            "rekey",
            "prod",
            "--custodian",
            current[1],
            "--custodian",
            "Dan",
            "--threshold",
            "1",
            "--reason",
            "after the drill",
            "--reader",
            &r,
        ],
        &refs(&answers),
        &[],
    );
    assert!(end.ends_with(", 0)"), "{end}\n{out}");
    assert!(
        out.contains("was left by an earlier rekey that stopped"),
        "{out}"
    );
    assert!(!previous.exists());

    // Not while another ceremony replaces the vault (it holds the lock), nor while a rotation
    // is unfinished: refused before anyone is asked, with a record.
    let lock = std::fs::File::create(home.state_file("rotations/prod.lock")).unwrap();
    lock.lock().unwrap();
    let change = [
        "rekey",
        "prod",
        "--passphrase",
        "Dan",
        "--reason",
        "x",
        "--reader",
        &r,
    ];
    let (out, _) = converse(&home, &change, &[], &[]);
    assert!(out.contains("another ceremony that replaces this profile's vault (a rotation or a rekey) is running"), "{out}");
    drop(lock);
    home.skip_ahead(Some(&sts), 60);
    let (out, end) = converse(
        &home,
        &[
            "rotate",
            "prod",
            "--reason",
            "killed rotation",
            "--reader",
            &r,
        ],
        &refs(&quorum(&[3], 1)),
        &[("BREAKGLASS_CRASH_AT", "after-created")],
    );
    assert!(end.contains("SIGKILL"), "{end}\n{out}");
    let (out, _) = converse(&home, &change, &[], &[]);
    assert!(
        out.contains("a key rotation of profile \"prod\" stopped half-way"),
        "{out}"
    );
    assert!(out.contains("breakglass rotate prod"), "{out}");
    let last = rekey_records(&home).pop().unwrap();
    assert!(
        last["outcome"].as_str().unwrap().starts_with("failure"),
        "{last}"
    );
}
