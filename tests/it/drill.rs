//! The quarterly drill through the real binary, pcscd and the soft token, against the sandbox's
//! emulator: an organization with a sound break-glass role in most accounts and one broken in
//! each way the drill knows, the user's own drift, the report, the audit record, `--last`,
//! `status`'s reminder, throttling at AWS's STS limit, bad input and Ctrl-C.

use crate::common;

use std::net::SocketAddr;

use serde_json::Value;

use breakglass::sandbox::sts::{member_account_id, Drift, Sts, ORG_ROOT_ID};
use common::home::*;
use common::*;

const ROLE: &str = "BreakGlass";

/// What a command on a pty printed, and its exit code.
struct Ran {
    out: String,
    code: Option<i32>,
}

/// `breakglass drill prod ARGS` on a pty, answered as Alice and Bob.
fn drill(home: &Home, reader: &str, args: &[&str]) -> Ran {
    let mut all = vec!["drill", "prod", "--reader", reader];
    all.extend_from_slice(args);
    // Generous: a thousand moto accounts take most of a minute; only a hang reaches it.
    let mut p = pty(home.command(&all), 300_000);
    let out = answer_until_end(&mut p, || {});
    let status = p.process().wait().unwrap();
    let code = match status {
        rexpect::process::WaitStatus::Exited(_, c) => Some(c),
        _ => None,
    };
    assert!(
        !out.contains("waiting for a fresh MFA time window"),
        "skip ahead instead:\n{out}"
    );
    Ran { out, code }
}

/// The JSON report a `--json` run printed: from its opening `{` (the terminal may have put a
/// progress bar's erasure before it on the line) to the line `}`.
fn report_json(out: &str) -> Value {
    let out = out.replace('\r', "");
    let start = out
        .find("{\n  \"profile\"")
        .unwrap_or_else(|| panic!("no JSON in:\n{out}"));
    let end = start + out[start..].find("\n}").unwrap() + 2;
    serde_json::from_str(&out[start..end]).unwrap()
}

fn drill_records(home: &Home) -> Vec<Value> {
    home.audit()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["event"] == "drill")
        .collect()
}

/// Sets profile keys (appended to the profile's section, the config's last).
fn configure(home: &Home, lines: &str) {
    let mut config = std::fs::read_to_string(home.config_file()).unwrap();
    config += lines;
    std::fs::write(home.config_file(), config).unwrap();
}

/// Whether a finding of `report` names `what`.
fn text_has(report: &Value, what: &str) -> bool {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f.to_string().contains(what))
}

/// The findings of `report` for `account` (`None`: the user's), by kind.
fn kinds(report: &Value, account: Option<&str>) -> Vec<String> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["account"].as_str() == account)
        .map(|f| f["kind"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_drill_of_fifty_accounts_finds_each_drift_and_reports_it() {
    let test = "a_drill_of_fifty_accounts_finds_each_drift_and_reports_it";
    if !pcsc_ready(test) {
        return;
    }
    let token = SoftToken::approve(0);
    let r = token.reader();
    let sts = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let home = Home::new();
    let (_, key_secret) = enrol_at_emulator(&home, &sts, "prod", &r);
    // A hung account fails at the call deadline: one second here. Every account must have
    // the alert rule, enabled, and the role its policy.
    configure(
        &home,
        "connect_timeout_secs = 1\ncall_timeout_secs = 1\ndrill_rule = \"breakglass-activity\"\n\
         drill_role_policies = [\"arn:aws:iam::aws:policy/AdministratorAccess\"]\n",
    );
    let user = sts.create_user("breakglass");
    let ids = sts.create_organization(50, ROLE, std::slice::from_ref(&user));
    for id in &ids {
        sts.put_rule(id, "breakglass-activity", Some(true));
    }
    let broken = [
        (3, Drift::NoRole, "role-denied"),
        (7, Drift::TrustsAccount, "trust-others"),
        (11, Drift::NoMfaCondition, "trust-no-mfa"),
        (15, Drift::DeniesSourceIdentity, "trust-no-source-identity"),
        (19, Drift::LongSessions, "session-duration"),
        (27, Drift::Silent, "unreachable"),
    ];
    for (i, drift, _) in broken {
        sts.drift(&ids[i - 1], ROLE, drift);
    }
    // The optional checks: a rule missing, a rule disabled, the role's policy detached.
    sts.put_rule(&ids[30], "breakglass-activity", None);
    sts.put_rule(&ids[34], "breakglass-activity", Some(false));
    sts.set_role_policies(&ids[38], ROLE, &[]);
    let optional = [
        (31, "rule-missing"),
        (35, "rule-disabled"),
        (39, "role-policy-missing"),
    ];
    sts.drift(&ids[22], ROLE, Drift::Suspended);
    // Roles by OU: legacy (its own role) ⊃ legacy/mid (none: legacy's) ⊃ legacy/mid/eu (its
    // own), and one account of eu with a role of its own. None of them has the default role,
    // so an override missed is a finding. An OU that is not the organization's is a finding.
    let legacy = sts.create_ou("legacy", ORG_ROOT_ID);
    let mid = sts.create_ou("mid", &legacy);
    let eu = sts.create_ou("eu", &mid);
    let placed = [
        (41, &legacy, "BreakGlassLegacy"),
        (42, &legacy, "BreakGlassLegacy"),
        (43, &mid, "BreakGlassLegacy"),
        (44, &eu, "BreakGlassEU"),
        (45, &eu, "BreakGlassOwn"),
    ];
    for (i, ou, role) in placed {
        sts.move_account(&ids[i - 1], ou);
        sts.drift(&ids[i - 1], ROLE, Drift::NoRole);
        sts.add_role(&ids[i - 1], role, std::slice::from_ref(&user));
    }
    configure(
        &home,
        &format!(
            "[profiles.prod.drill_role_overrides]\n\"{legacy}\" = \"BreakGlassLegacy\"\n\
             \"{eu}\" = \"BreakGlassEU\"\n\"{}\" = \"BreakGlassOwn\"\n\
             \"ou-sbx0-gone0000\" = \"BreakGlassGone\"\n",
            ids[44]
        ),
    );
    // The user's own drift: a console password, a second key, a device no token holds.
    sts.set_login_profile("breakglass", true);
    let (second, _) = sts.create_access_key("breakglass");
    let (rogue, _) = sts.create_mfa_device("breakglass", "rogue");

    let report_file = home.config_file().with_file_name("drill.md");
    let transcript = home.config_file().with_file_name("drill-transcript.md");
    let ran = drill(
        &home,
        &r,
        &[
            "--organization",
            "--role",
            ROLE,
            "--json",
            "--report",
            report_file.to_str().unwrap(),
            "--transcript",
            transcript.to_str().unwrap(),
        ],
    );
    assert_eq!(ran.code, Some(1), "findings end with 1:\n{}", ran.out);
    let report = report_json(&ran.out);
    assert_eq!(report["counts"]["accounts"], 50, "{report:#}");
    assert_eq!(report["counts"]["skipped"], 1);
    assert_eq!(report["counts"]["failed"], broken.len() + optional.len());
    assert_eq!(
        report["counts"]["passed"],
        50 - 1 - broken.len() - optional.len()
    );
    for (i, _, kind) in broken {
        let id = member_account_id(i);
        assert_eq!(kinds(&report, Some(&id)), [kind], "account {i}: {report:#}");
    }
    for (i, kind) in optional {
        let id = member_account_id(i);
        assert_eq!(kinds(&report, Some(&id)), [kind], "account {i}: {report:#}");
    }
    assert_eq!(report["accounts"][22]["outcome"], "skipped");
    for (i, _, role) in placed {
        let id = member_account_id(i);
        assert_eq!(
            kinds(&report, Some(&id)),
            [""; 0],
            "account {i}: {report:#}"
        );
        assert_eq!(
            report["accounts"][i - 1]["role_arn"],
            format!("arn:aws:iam::{id}:role/{role}")
        );
    }
    let mut user_kinds = kinds(&report, None);
    user_kinds.sort();
    assert_eq!(
        user_kinds,
        [
            "console-password",
            "key-second",
            "mfa-unknown-device",
            "ou-unreadable"
        ]
    );
    assert!(text_has(&report, "ou-sbx0-gone0000"), "{report:#}");
    let text = report.to_string();
    assert!(text.contains(&rogue), "the unknown device is named");
    assert!(!text.contains(&second), "key ids are masked: {text}");
    assert!(text.contains(&second[second.len() - 4..]));
    // Every role session carried both holders as SourceIdentity: the emulator kept it.
    assert_eq!(report["holders"][0], "Alice");

    // The Markdown report: findings first, each with its fix; its hash in the audit record.
    let md = std::fs::read_to_string(&report_file).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&report_file)
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert!(md.find("## Findings").unwrap() < md.find("## Accounts").unwrap());
    for (i, _, kind) in broken {
        assert!(
            md.contains(&format!("| {} | ", member_account_id(i))),
            "{md}"
        );
        assert!(md.contains(&format!("(`{kind}`)")), "{md}");
    }
    let records = drill_records(&home);
    assert_eq!(records.len(), 1);
    let rec = &records[0];
    let sha = data_encoding::HEXLOWER
        .encode(ring::digest::digest(&ring::digest::SHA256, md.as_bytes()).as_ref());
    assert_eq!(rec["report_sha256"], sha);
    assert_eq!(rec["accounts"], 50);
    assert_eq!(rec["failed"], broken.len() + optional.len());
    assert_eq!(rec["findings"], broken.len() + optional.len() + 4);
    assert!(rec["outcome"]
        .as_str()
        .unwrap()
        .starts_with("failure: 50 accounts"));
    assert_eq!(rec["password_holder"], "Alice");
    // The activation before it was recorded as the drill's.
    assert!(home.audit().contains("\"command\":\"breakglass drill\""));
    let t = std::fs::read_to_string(&transcript).unwrap();
    assert!(t.contains("Break-glass drill") && t.contains(&sha), "{t}");

    // `--last` prints the summary from the audit log; `status` warns: no drill has passed.
    let last = ok(run_with_input(
        home.command(&["drill", "--last", "prod"]),
        None,
    ));
    assert!(
        last.contains("50 accounts: 40 passed, 9 with findings, 1 skipped"),
        "{last}"
    );
    assert!(last.contains(&member_account_id(3)), "{last}");
    let status = ok(run_with_input(home.command(&["status"]), None));
    assert!(status.contains("has never passed a drill"), "{status}");

    // Nothing secret was written anywhere.
    home.assert_no_secret(&[("the long-term secret key", &key_secret)]);
}

#[test]
fn a_clean_drill_passes_and_status_reminds_after_ninety_days() {
    let test = "a_clean_drill_passes_and_status_reminds_after_ninety_days";
    if !pcsc_ready(test) {
        return;
    }
    let token = SoftToken::approve(1);
    let r = token.reader();
    let sts = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let home = Home::new();
    enrol_at_emulator(&home, &sts, "prod", &r);
    let user = sts.create_user("breakglass");
    let ids = sts.create_organization(5, ROLE, std::slice::from_ref(&user));
    let file = home.config_file().with_file_name("accounts.txt");
    std::fs::write(
        &file,
        format!(
            "# the five members\n{}\n\n{}  # two\n{}\n{}\n{}\n",
            ids[0], ids[1], ids[2], ids[3], ids[4]
        ),
    )
    .unwrap();
    configure(&home, &format!("drill_role = \"{ROLE}\"\n"));
    let ran = drill(&home, &r, &["--accounts", file.to_str().unwrap()]);
    assert_eq!(ran.code, Some(0), "{}", ran.out);
    assert!(
        ran.out
            .contains("5 accounts: 5 passed, 0 with findings, 0 skipped; 0 findings"),
        "{}",
        ran.out
    );
    assert_eq!(drill_records(&home)[0]["outcome"], "success");
    let status = ok(run_with_input(home.command(&["status"]), None));
    assert!(status.contains("last drill passed 0 days ago"), "{status}");
    // Ninety-one days later (the command's clock moved ahead, nothing waited for).
    let mut later = home.command(&["status"]);
    later.env("BREAKGLASS_CLOCK_AHEAD_SECS", (91 * 86_400).to_string());
    let status = ok(run_with_input(later, None));
    assert!(
        status.contains("the last drill that passed was 91 days ago"),
        "{status}"
    );

    // With a live session in the agent, the drill uses it: nobody is asked anything. The
    // security team hears its outcome at a webhook.
    let hooks = tempfile::tempdir().unwrap();
    let hook = common::hooks::Receiver::start(hooks.path(), &[200]);
    configure(&home, &hook.webhook_table("prod"));
    home.skip_ahead(Some(&sts), 60);
    let out = unlock(&home, "prod", &r, ("Carol", "Dan"), PASSPHRASE);
    assert!(out.contains("\"Version\""), "{out}");
    let mut p = pty(
        home.command(&["drill", "prod", "--accounts", file.to_str().unwrap()]),
        60_000,
    );
    let out = p.exp_eof().unwrap();
    assert!(out.contains("the live session of Carol and Dan"), "{out}");
    assert!(!out.contains("type your name"), "{out}");
    assert!(out.contains("5 accounts: 5 passed"), "{out}");
    let records = drill_records(&home);
    assert_eq!(records.len(), 2);
    assert_eq!(records[1]["password_holder"], "Carol");
    assert_eq!(records[1]["outcome"], "success");
    let events: Vec<Value> = hook
        .bodies()
        .into_iter()
        .map(|b| b["breakglass"].clone())
        .collect();
    let names: Vec<&str> = events
        .iter()
        .map(|b| b["event"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["activation attempt", "activation granted", "drill"]);
    let told = &events[2];
    assert!(
        told["detail"]
            .as_str()
            .unwrap()
            .starts_with("5 accounts: 5 passed, 0 with findings"),
        "{told}"
    );
    assert_eq!(told["password_holder"], "Carol");
    assert_eq!(told["token_holder"], "Dan");
    ok(run_with_input(home.command(&["lock", "prod"]), None));
}

#[test]
fn bad_accounts_files_and_missing_roles_are_refused_before_any_ceremony() {
    let home = Home::new();
    std::fs::create_dir_all(home.config_file().parent().unwrap()).unwrap();
    std::fs::write(home.config_file(), "[profiles.prod]\n").unwrap();
    let file = home.config_file().with_file_name("accounts.txt");
    std::fs::write(&file, "111122223333\n12345678901\n").unwrap();
    let o = run_with_input(
        home.command(&[
            "drill",
            "prod",
            "--role",
            ROLE,
            "--accounts",
            file.to_str().unwrap(),
        ]),
        None,
    );
    let err = fails(
        o,
        2,
        &[":2: \"12345678901\" is not an AWS account id (12 digits)"],
    );
    assert!(!err.contains("Password holder"), "{err}");
    let o = run_with_input(home.command(&["drill", "prod", "--organization"]), None);
    fails(o, 2, &["names no role to drill", "--role NAME"]);
    let o = run_with_input(home.command(&["drill", "prod", "--role", ROLE]), None);
    fails(o, 2, &["no accounts to drill", "--organization"]);
    let o = run_with_input(
        home.command(&[
            "drill",
            "prod",
            "--organization",
            "--role",
            "arn:aws:iam::1:role/x",
        ]),
        None,
    );
    fails(o, 2, &["is not an IAM role name"]);
    std::fs::write(
        home.config_file(),
        "[profiles.prod]\ndrill_accounts = [\"1234\"]\n",
    )
    .unwrap();
    let o = run_with_input(home.command(&["drill", "prod"]), None);
    fails(o, 2, &["drill_accounts holds \"1234\""]);
    let o = run_with_input(home.command(&["drill", "--last", "prod"]), None);
    fails(o, 2, &["drill_accounts"]);
}

#[test]
fn organizations_refused_is_a_finding_naming_the_permission() {
    let test = "organizations_refused_is_a_finding_naming_the_permission";
    if !pcsc_ready(test) {
        return;
    }
    let token = SoftToken::approve(0);
    let r = token.reader();
    let sts = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let home = Home::new();
    enrol_at_emulator(&home, &sts, "prod", &r);
    let user = sts.create_user("breakglass");
    sts.create_organization(3, ROLE, std::slice::from_ref(&user));
    sts.deny("breakglass", "ListAccounts");
    let ran = drill(&home, &r, &["--organization", "--role", ROLE]);
    assert_eq!(ran.code, Some(1), "{}", ran.out);
    assert!(
        ran.out.contains("organizations:ListAccounts"),
        "the finding names the permission:\n{}",
        ran.out
    );
    assert!(ran.out.contains("0 accounts"), "{}", ran.out);
}

#[test]
fn hundreds_of_accounts_at_an_sts_limit_pass_without_a_throttling_finding() {
    let test = "hundreds_of_accounts_at_an_sts_limit_pass_without_a_throttling_finding";
    if !pcsc_ready(test) {
        return;
    }
    let token = SoftToken::approve(1);
    let r = token.reader();
    let sts = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let home = Home::new();
    enrol_at_emulator(&home, &sts, "prod", &r);
    let user = sts.create_user("breakglass");
    sts.create_organization(400, ROLE, std::slice::from_ref(&user));
    // A limit this machine's drill exceeds (AWS's own is 600 a second; `benches/drill.rs`
    // measures a thousand accounts at it): 800 STS calls, a 150-call burst, ~4.3 s.
    sts.throttle_sts(Some(150));
    let t0 = std::time::Instant::now();
    let ran = drill(&home, &r, &["--organization", "--role", ROLE, "--json"]);
    eprintln!("400 accounts at 150 STS requests/s: {:?}", t0.elapsed());
    assert_eq!(ran.code, Some(0), "{}", ran.out);
    let report = report_json(&ran.out);
    assert_eq!(report["counts"]["passed"], 400);
    assert!(
        report["throttled"].as_u64().unwrap() > 0,
        "the limit was reached (else this test proves nothing): {}",
        report["throttled"]
    );
}

#[test]
fn ctrl_c_stops_the_drill_with_a_partial_report() {
    let test = "ctrl_c_stops_the_drill_with_a_partial_report";
    if !pcsc_ready(test) {
        return;
    }
    let token = SoftToken::approve(0);
    let r = token.reader();
    let sts = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let home = Home::new();
    let (_, long_term) = enrol_at_emulator(&home, &sts, "prod", &r);
    // The first account hangs far past the test's run: Ctrl-C comes while it is in flight,
    // however slow the machine (or the memory scan below), so nothing is tried to the end.
    configure(&home, "call_timeout_secs = 300\n");
    let user = sts.create_user("breakglass");
    let ids = sts.create_organization(20, ROLE, std::slice::from_ref(&user));
    // Every account hangs until the call deadline: one at a time, the drill would take 100 min.
    for id in &ids {
        sts.drift(id, ROLE, Drift::Silent);
    }
    let mut p = pty(
        home.command(&[
            "drill",
            "prod",
            "--reader",
            &r,
            "--organization",
            "--role",
            ROLE,
            "--concurrency",
            "1",
        ]),
        60_000,
    );
    answer_ceremony(&mut p, None);
    p.exp_string("The organization has 20 member accounts.")
        .unwrap();
    // Mid-drill, with the MFA session in hand: the long-term key and the passphrase are gone
    // from the drill's memory (the key is dropped right after GetSessionToken).
    if is_root() {
        let pid = child_pid(&["drill", &r]);
        let hits = scan_memory(pid, &[&long_term, PASSPHRASE, "Alice"]);
        assert_eq!(hits[..2], [0, 0], "the long-term key, the passphrase");
        assert!(
            hits[2] > 0,
            "the scan finds what the drill holds: a holder's name"
        );
    } else {
        skip(
            "the drill's memory scan",
            "needs root to read another process's memory",
        );
    }
    p.process_mut()
        .signal(rexpect::process::Signal::SIGINT)
        .unwrap();
    let out = p.exp_eof().unwrap();
    assert!(out.contains("the report is partial"), "{out}");
    let rec = &drill_records(&home)[0];
    assert!(
        rec["outcome"]
            .as_str()
            .unwrap()
            .starts_with("failure: stopped"),
        "{rec}"
    );
    assert_eq!(rec["not_tried"], 20, "{rec}");
}

/// A client of moto's `service` signed with `creds` (id, secret, token).
fn moto_config(endpoint: &str, creds: (&str, &str, Option<&str>)) -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(
                aws_credential_types::Credentials::new(
                    creds.0,
                    creds.1,
                    creds.2.map(str::to_owned),
                    None,
                    "test",
                ),
            ),
        )
        .build()
}

fn trust_policy(user: &str, condition: &str, actions: &str, principal: &str) -> String {
    let principal = if principal.is_empty() {
        format!(r#"{{"AWS":"{user}"}}"#)
    } else {
        principal.to_owned()
    };
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{principal},"Action":{actions}{condition}}}]}}"#
    )
}

/// moto holds no trust-policy logic (AssumeRole of any role, even a missing one, succeeds):
/// the drill's findings there come from its own reading of each role, which this test proves
/// on a thousand accounts made by the test, a handful broken each way.
#[test]
fn a_drill_of_a_thousand_moto_accounts_finds_the_broken_roles() {
    let test = "a_drill_of_a_thousand_moto_accounts_finds_the_broken_roles";
    if !pcsc_ready(test) {
        return;
    }
    let Some(moto) = Moto::start(test) else {
        return;
    };
    let rt = rt();
    let user = moto.breakglass_user(&rt);
    let user_arn = "arn:aws:iam::123456789012:user/breakglass";
    user.enable_mfa(&rt);
    let admin = moto_config(
        &moto.endpoint,
        ("AKIAADMIN0000000000", "admin-secret-for-moto", None),
    );
    let org = aws_sdk_organizations::Client::new(&admin);
    rt.block_on(
        org.create_organization()
            .feature_set(aws_sdk_organizations::types::OrganizationFeatureSet::All)
            .send(),
    )
    .unwrap();
    let sts = aws_sdk_sts::Client::new(&admin);
    const SOUND: &str = r#","Condition":{"Bool":{"aws:MultiFactorAuthPresent":"true"}}"#;
    const BOTH: &str = r#"["sts:AssumeRole","sts:SetSourceIdentity"]"#;
    // (every 200th from an offset: five of each) → the finding expected.
    let broken = |i: usize| match i % 200 {
        3 => Some("role-missing"),
        5 => Some("trust-others"),
        7 => Some("trust-no-mfa"),
        9 => Some("trust-no-source-identity"),
        11 => Some("session-duration"),
        _ => None,
    };
    let t0 = std::time::Instant::now();
    let mut expected = std::collections::BTreeMap::new();
    let mut audited = None;
    rt.block_on(async {
        for i in 0..1000 {
            let made = org
                .create_account()
                .account_name(format!("member-{i:04}"))
                .email(format!("member-{i}@example.com"))
                .send()
                .await
                .unwrap();
            let id = made.create_account_status.unwrap().account_id.unwrap();
            if let Some(kind) = broken(i) {
                expected.insert(id.clone(), kind);
            }
            if broken(i) == Some("role-missing") {
                continue;
            }
            // moto lets the admin into any account this way (no trust is evaluated).
            let c = sts
                .assume_role()
                .role_arn(format!(
                    "arn:aws:iam::{id}:role/OrganizationAccountAccessRole"
                ))
                .role_session_name("setup")
                .send()
                .await
                .unwrap()
                .credentials
                .unwrap();
            let iam = aws_sdk_iam::Client::new(&moto_config(
                &moto.endpoint,
                (
                    &c.access_key_id,
                    &c.secret_access_key,
                    Some(&c.session_token),
                ),
            ));
            let policy = match broken(i) {
                Some("trust-others") => trust_policy(
                    user_arn,
                    SOUND,
                    BOTH,
                    r#"{"AWS":"arn:aws:iam::123456789012:root"}"#,
                ),
                Some("trust-no-mfa") => trust_policy(user_arn, "", BOTH, ""),
                Some("trust-no-source-identity") => {
                    trust_policy(user_arn, SOUND, r#""sts:AssumeRole""#, "")
                }
                _ => trust_policy(user_arn, SOUND, BOTH, ""),
            };
            if i == 100 {
                // A user of this member account with two active keys, for --audit-keys.
                iam.create_user().user_name("ci").send().await.unwrap();
                for _ in 0..2 {
                    iam.create_access_key()
                        .user_name("ci")
                        .send()
                        .await
                        .unwrap();
                }
                audited = Some(id.clone());
            }
            iam.create_role()
                .role_name(ROLE)
                .assume_role_policy_document(policy)
                .max_session_duration(if broken(i) == Some("session-duration") {
                    43_200
                } else {
                    3600
                })
                .send()
                .await
                .unwrap();
        }
    });
    eprintln!(
        "1,000 moto accounts with their roles made in {:?}",
        t0.elapsed()
    );

    let token = SoftToken::approve(0);
    let r = token.reader();
    let home = Home::new();
    enroll_imported(
        &home,
        "prod",
        &moto.endpoint,
        &r,
        &user.mfa_serial,
        (&user.key_id, &user.secret, &user.seed),
    );
    let t0 = std::time::Instant::now();
    let ran = drill(&home, &r, &["--organization", "--role", ROLE, "--json"]);
    eprintln!("a drill of 1,000 moto accounts: {:?}", t0.elapsed());
    assert_eq!(ran.code, Some(1), "{}", ran.out);
    let report = report_json(&ran.out);
    // The management account is a member of its own organization; its role is missing too.
    let accounts = report["accounts"].as_array().unwrap();
    assert_eq!(accounts.len(), 1001);
    for a in accounts {
        let id = a["id"].as_str().unwrap();
        let found = kinds(&report, Some(id));
        match expected.get(id) {
            Some(kind) => assert_eq!(found, [*kind], "{id}: {a}"),
            // The management account: no role there either (the user's own second key is
            // not there: moto made one key).
            None if id == "123456789012" => assert_eq!(found, ["role-missing"], "{a}"),
            None => assert!(found.is_empty(), "{id}: {found:?}"),
        }
    }
    assert_eq!(report["counts"]["failed"], expected.len() + 1);
    assert!(kinds(&report, None).is_empty(), "{report:#}");

    // `--audit-keys` over three of them: the user with two active keys is found, in its account.
    let audited = audited.unwrap();
    let clean: Vec<&str> = accounts
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .filter(|id| *id != "123456789012" && !expected.contains_key(*id) && *id != audited)
        .take(2)
        .collect();
    let file = home.config_file().with_file_name("three.txt");
    std::fs::write(&file, format!("{audited}\n{}\n{}\n", clean[0], clean[1])).unwrap();
    // And a role by OU: the second clean account moves to an OU whose role is named
    // otherwise, which it lacks (moto then lets AssumeRole in; GetRole finds no role).
    let ou = rt.block_on(async {
        let root = org.list_roots().send().await.unwrap().roots.unwrap()[0]
            .id
            .clone()
            .unwrap();
        let ou = org
            .create_organizational_unit()
            .parent_id(&root)
            .name("legacy")
            .send()
            .await
            .unwrap()
            .organizational_unit
            .unwrap()
            .id
            .unwrap();
        org.move_account()
            .account_id(clean[1])
            .source_parent_id(&root)
            .destination_parent_id(&ou)
            .send()
            .await
            .unwrap();
        ou
    });
    configure(
        &home,
        &format!("[profiles.prod.drill_role_overrides]\n\"{ou}\" = \"BreakGlassLegacy\"\n"),
    );
    home.skip_ahead(None, 60);
    let ran = drill(
        &home,
        &r,
        &[
            "--accounts",
            file.to_str().unwrap(),
            "--role",
            ROLE,
            "--json",
            "--audit-keys",
        ],
    );
    assert_eq!(ran.code, Some(1), "{}", ran.out);
    let report = report_json(&ran.out);
    assert_eq!(
        kinds(&report, Some(&audited)),
        ["iam-user-two-keys"],
        "{report:#}"
    );
    assert_eq!(
        kinds(&report, Some(clean[1])),
        ["role-missing"],
        "{report:#}"
    );
    let legacy = report["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == clean[1])
        .unwrap();
    assert_eq!(
        legacy["role_arn"],
        format!("arn:aws:iam::{}:role/BreakGlassLegacy", clean[1])
    );
    assert_eq!(report["counts"]["passed"], 1, "{report:#}");
}
