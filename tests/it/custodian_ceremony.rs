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

    // A wrong passphrase: that custodian is named, the other is not.
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
    let rec = activation(&home, "prod");
    assert!(
        rec["outcome"].as_str().unwrap().starts_with("failure"),
        "{rec}"
    );

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
    let out = unlock(&home, "prod", &r, &people(&[1, 2]), "Trent");
    session_json(&out);
}
