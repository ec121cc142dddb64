//! Activation notices (`[notify]`), through the real binary, pcscd and the soft token: HTTPS
//! webhooks at a local receiver with a test CA, SNS at moto with an SQS queue subscribed;
//! required channels fail closed (the granted session is wiped, nothing handed out), others
//! fail open with a warning; tickets are checked against the profile's pattern.

use crate::common;

use std::net::SocketAddr;

use serde_json::Value;

use breakglass::sandbox::sts::Sts;
use common::home::*;
use common::hooks::Receiver;
use common::*;

/// Appends to the config (the profile is its last table).
fn append(home: &Home, lines: &str) {
    let mut config = std::fs::read_to_string(home.config_file()).unwrap();
    config += lines;
    std::fs::write(home.config_file(), config).unwrap();
}

fn replace(home: &Home, from: &str, to: &str) {
    let config = std::fs::read_to_string(home.config_file()).unwrap();
    assert!(config.contains(from), "{config}");
    std::fs::write(home.config_file(), config.replace(from, to)).unwrap();
}

/// `unlock prod` on a pty with `extra` flags, the holders answering what it asks.
fn unlock_with(home: &Home, reader: &str, extra: &[&str]) -> String {
    let mut args = vec!["unlock", "prod", "--reason", "IdP down", "--reader", reader];
    args.extend_from_slice(extra);
    let mut p = pty(home.command(&args), 30_000);
    answer_until_end(&mut p, || {})
}

fn records(home: &Home) -> Vec<Value> {
    home.audit()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The chain head after the record `pick` finds: SHA-256 of its line.
fn head_after(home: &Home, pick: impl Fn(&Value) -> bool) -> String {
    let audit = home.audit();
    let line = audit
        .lines()
        .rfind(|l| pick(&serde_json::from_str(l).unwrap()))
        .unwrap_or_else(|| panic!("no such record in\n{audit}"));
    data_encoding::HEXLOWER
        .encode(ring::digest::digest(&ring::digest::SHA256, line.as_bytes()).as_ref())
}

fn is_granted(r: &Value) -> bool {
    r["event"] == "activation" && r["outcome"] == "success"
}

fn webhook(url: &str, required: bool, ca_file: Option<&std::path::Path>) -> String {
    let mut s = format!(
        "[[profiles.prod.notify.webhooks]]\nname = \"secteam\"\nurl = \"{url}\"\nrequired = {required}\n"
    );
    if let Some(ca) = ca_file {
        s += &format!("ca_file = \"{}\"\n", ca.display());
    }
    s
}

#[test]
fn webhooks_hear_the_attempt_and_the_grant_with_the_ticket_and_the_audit_head() {
    let test = "webhooks_hear_the_attempt_and_the_grant_with_the_ticket_and_the_audit_head";
    if !pcsc_ready(test) {
        return;
    }
    let token = SoftToken::approve(0);
    let r = token.reader();
    let sts = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let home = Home::new();
    let (_, secret) = enrol_at_emulator(&home, &sts, "prod", &r);
    let dir = tempfile::tempdir().unwrap();
    let hook = Receiver::start(dir.path(), &[200]);
    append(
        &home,
        &format!(
            "require_ticket = true\nticket_pattern = \"INC[0-9]{{6}}\"\n{}",
            webhook(&hook.url, true, Some(&hook.ca_file))
        ),
    );

    // A ticket the pattern refuses ends it before anything, naming the pattern.
    let out = unlock_with(&home, &r, &["--ticket", "CHG-1"]);
    assert!(
        out.contains("does not match profile \"prod\"'s ticket_pattern \"INC[0-9]{6}\"")
            && out.contains("next: "),
        "{out}"
    );
    assert!(hook.bodies().is_empty());

    let out = unlock_with(&home, &r, &["--ticket", "INC123456"]);
    assert!(out.contains("The agent holds the session"), "{out}");
    let bodies = hook.bodies();
    assert_eq!(bodies.len(), 2, "{bodies:#?}");
    let (attempt, granted) = (&bodies[0]["breakglass"], &bodies[1]["breakglass"]);
    assert_eq!(attempt["event"], "activation attempt");
    assert_eq!(granted["event"], "activation granted");
    for b in [attempt, granted] {
        assert_eq!(b["profile"], "prod");
        assert_eq!(b["password_holder"], "Alice");
        assert_eq!(b["token_holder"], "Bob");
        assert_eq!(b["reason"], "IdP down");
        assert_eq!(b["ticket"], "INC123456");
        assert_eq!(b["version"], env!("CARGO_PKG_VERSION"));
        assert!(!b["host"].as_str().unwrap().is_empty());
    }
    // The attempt is heard before STS is called: no key yet; the grant carries the session's.
    assert!(attempt["temporary_access_key_id"].is_null());
    let log = records(&home);
    let activation = log.iter().rfind(|r| is_granted(r)).unwrap();
    assert_eq!(activation["ticket"], "INC123456");
    assert_eq!(
        granted["temporary_access_key_id"],
        activation["temporary_access_key_id"]
    );
    assert_eq!(granted["expiration"], activation["expiration"]);
    assert_eq!(
        granted["user_arn"].as_str().unwrap().split(':').nth(2),
        Some("iam")
    );
    // The heads carried are the chain's after each event's record: the log can be checked
    // against them.
    assert_eq!(
        attempt["audit_head"],
        head_after(&home, |r| r["event"] == "activation started")
    );
    let head = head_after(&home, is_granted);
    assert_eq!(granted["audit_head"], head.as_str());
    ok(home
        .command(&["audit", "verify", "--expect-head", &head])
        .output()
        .unwrap());
    let text = bodies[1]["text"].as_str().unwrap();
    assert!(
        text.starts_with("BREAK-GLASS activation granted: profile prod")
            && text.contains("Ticket: INC123456.")
            && text.contains(&head),
        "{text}"
    );
    let notices: Vec<&Value> = log.iter().filter(|r| r["event"] == "notice").collect();
    assert_eq!(notices.len(), 2, "{log:#?}");
    for n in &notices {
        assert_eq!(n["channel"], "webhook:secteam");
        assert_eq!(n["outcome"], "success");
        assert_eq!(n["required"], true);
    }
    home.assert_no_secret(&[
        ("the long-term secret", &secret),
        ("the passphrase", PASSPHRASE),
    ]);
}

#[test]
fn a_required_webhook_that_fails_after_the_grant_withholds_the_session() {
    let test = "a_required_webhook_that_fails_after_the_grant_withholds_the_session";
    if !pcsc_ready(test) {
        return;
    }
    let token = SoftToken::approve(1);
    let r = token.reader();
    let sts = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let home = Home::new();
    enrol_at_emulator(&home, &sts, "prod", &r);
    let dir = tempfile::tempdir().unwrap();
    // The attempt is heard; every later post gets a 500.
    let hook = Receiver::start(dir.path(), &[200, 500]);
    append(&home, &webhook(&hook.url, true, Some(&hook.ca_file)));

    let out = unlock_with(&home, &r, &[]);
    assert!(
        out.contains("the activation granted notice could not be delivered to a required channel (webhook:secteam: webhook \"secteam\" answered HTTP 500")
            && out.contains("the session STS granted was wiped and nothing was handed out")
            && out.contains("next: "),
        "{out}"
    );
    assert!(!out.contains("The agent holds the session"), "{out}");
    // Retried: one attempt notice, then three tries of the grant.
    assert_eq!(hook.bodies().len(), 4, "{:#?}", hook.bodies());
    let log = records(&home);
    let tail: Vec<&str> = log
        .iter()
        .map(|r| r["event"].as_str().unwrap())
        .skip_while(|e| *e != "activation started")
        .collect();
    assert_eq!(
        tail,
        [
            "activation started",
            "notice",
            "activation",
            "notice",
            "activation withdrawn"
        ],
        "{log:#?}"
    );
    let withdrawn = log.last().unwrap();
    assert!(
        withdrawn["outcome"]
            .as_str()
            .unwrap()
            .starts_with("failure: a required notice was not delivered: webhook:secteam: "),
        "{withdrawn}"
    );
    assert_eq!(withdrawn["channels"][0], "webhook:secteam");
    let granted = log.iter().rfind(|r| is_granted(r)).unwrap();
    assert_eq!(
        withdrawn["temporary_access_key_id"],
        granted["temporary_access_key_id"]
    );
    let status = ok(home.command(&["status"]).output().unwrap());
    assert!(
        status.contains("last delivery: the activation granted notice to webhook:secteam at ")
            && status.contains("NOT delivered (webhook \"secteam\" answered HTTP 500"),
        "{status}"
    );
    // The agent holds nothing: a program gets no credentials.
    let o = home
        .command(&["credential-process", "prod"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!o.status.success(), "{}", stdout(&o));
    assert!(!stdout(&o).contains("SecretAccessKey"));
}

#[test]
fn an_untrusted_certificate_warns_when_optional_and_stops_the_attempt_when_required() {
    let test = "an_untrusted_certificate_warns_when_optional_and_stops_the_attempt_when_required";
    if !pcsc_ready(test) {
        return;
    }
    let token = SoftToken::approve(0);
    let r = token.reader();
    let sts = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let home = Home::new();
    enrol_at_emulator(&home, &sts, "prod", &r);
    let dir = tempfile::tempdir().unwrap();
    let hook = Receiver::start(dir.path(), &[200]);
    // No ca_file: the test CA is not trusted.
    append(&home, &webhook(&hook.url, false, None));

    let out = unlock_with(&home, &r, &[]);
    assert!(
        out.contains(
            "WARNING: the activation attempt notice could not be delivered to webhook:secteam"
        ) && out.contains("TLS certificate is not trusted")
            && out.contains("ca_file")
            && out.contains("The agent holds the session"),
        "{out}"
    );
    // The webhook's path (its secret) is never shown.
    assert!(!out.contains("T000-SECRET-PATH"), "{out}");
    assert!(!home.audit().contains("T000-SECRET-PATH"));
    let failed = records(&home)
        .into_iter()
        .filter(|r| {
            r["event"] == "notice" && r["outcome"].as_str().unwrap().starts_with("failure: ")
        })
        .count();
    assert_eq!(failed, 2, "{}", home.audit());
    ok(home.command(&["lock", "prod"]).output().unwrap());
    // The lock's notice fails too (the agent sends it after its reply).
    let failures = |home: &Home| {
        records(home)
            .into_iter()
            .filter(|r| {
                r["event"] == "notice" && r["outcome"].as_str().unwrap().starts_with("failure: ")
            })
            .count()
    };
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while failures(&home) < 3 && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(failures(&home), 3, "{}", home.audit());

    // Required: the attempt ends before the passphrase is asked, and STS is not called.
    replace(&home, "required = false", "required = true");
    let out = unlock_with(&home, &r, &[]);
    assert!(
        out.contains("the activation attempt notice could not be delivered to a required channel")
            && out.contains("STS was not called"),
        "{out}"
    );
    assert!(!out.contains("passphrase (not shown)"), "{out}");
    // One failed delivery (the attempt's); the refusal it caused is not sent to the same
    // dead channel again.
    assert_eq!(failures(&home), 4, "{}", home.audit());
    let last = records(&home)
        .into_iter()
        .rfind(|r| r["event"] == "activation")
        .unwrap();
    assert!(
        last["outcome"]
            .as_str()
            .unwrap()
            .contains("STS was not called"),
        "{last}"
    );
    assert!(last.get("temporary_access_key_id").is_none());
}

#[test]
fn sns_notices_reach_a_subscribed_queue_and_a_missing_topic_fails_closed() {
    let test = "sns_notices_reach_a_subscribed_queue_and_a_missing_topic_fails_closed";
    if !pcsc_ready(test) {
        return;
    }
    let Some(moto) = Moto::start(test) else {
        return;
    };
    let rt = rt();
    let user = moto.breakglass_user(&rt);
    let creds = aws_credential_types::Credentials::new(
        "AKIAADMIN0000000000",
        "admin-secret-for-moto",
        None,
        None,
        "test",
    );
    let region = aws_sdk_sqs::config::Region::new("eu-west-1");
    let sns = aws_sdk_sns::Client::from_conf(
        aws_sdk_sns::Config::builder()
            .behavior_version(aws_sdk_sns::config::BehaviorVersion::latest())
            .region(region.clone())
            .endpoint_url(&moto.endpoint)
            .credentials_provider(creds.clone())
            .build(),
    );
    let sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::Config::builder()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .region(region)
            .endpoint_url(&moto.endpoint)
            .credentials_provider(creds)
            .build(),
    );
    let topic = rt
        .block_on(sns.create_topic().name("breakglass-alerts").send())
        .unwrap()
        .topic_arn
        .unwrap();
    let queue = rt
        .block_on(sqs.create_queue().queue_name("secteam").send())
        .unwrap()
        .queue_url
        .unwrap();
    let queue_arn = rt
        .block_on(
            sqs.get_queue_attributes()
                .queue_url(&queue)
                .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .send(),
        )
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    rt.block_on(
        sns.subscribe()
            .topic_arn(&topic)
            .protocol("sqs")
            .endpoint(&queue_arn)
            .send(),
    )
    .unwrap();

    let token = SoftToken::approve(1);
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
    append(
        &home,
        &format!(
            "[profiles.prod.notify.sns]\ntopic = \"{topic}\"\nrequired = true\nendpoint = \"{}\"\n",
            moto.endpoint
        ),
    );
    let out = unlock(&home, "prod", &r, ("Alice", "Bob"), PASSPHRASE);
    let session = session_json(&out);
    let got = rt
        .block_on(
            sqs.receive_message()
                .queue_url(&queue)
                .max_number_of_messages(10)
                .send(),
        )
        .unwrap()
        .messages
        .unwrap_or_default();
    assert_eq!(got.len(), 1, "{got:#?}");
    let envelope: Value = serde_json::from_str(got[0].body().unwrap()).unwrap();
    assert_eq!(envelope["TopicArn"], topic.as_str());
    assert_eq!(envelope["Subject"], "breakglass: activation granted (prod)");
    let notice: Value = serde_json::from_str(envelope["Message"].as_str().unwrap()).unwrap();
    let b = &notice["breakglass"];
    assert_eq!(b["event"], "activation granted");
    assert_eq!(b["temporary_access_key_id"], session["AccessKeyId"]);
    assert_eq!(b["password_holder"], "Alice");
    assert_eq!(b["audit_head"], head_after(&home, is_granted).as_str());
    let sent = records(&home)
        .into_iter()
        .rfind(|r| r["event"] == "notice")
        .unwrap();
    assert_eq!(sent["channel"], format!("sns:{topic}").as_str());
    assert_eq!(sent["outcome"], "success");
    ok(home.command(&["lock", "prod"]).output().unwrap());

    // A topic that does not exist: the session is wiped, and the message names the setting.
    replace(&home, "breakglass-alerts", "no-such-topic");
    home.skip_ahead(None, 60);
    let mut p = pty(
        home.command(&[
            "unlock",
            "prod",
            "--reason",
            "IdP down",
            "--print-json",
            "--reader",
            &r,
        ]),
        30_000,
    );
    let out = answer_until_end(&mut p, || {});
    assert!(
        out.contains("could not be delivered to a required channel (sns:")
            && out.contains("[notify.sns] topic")
            && out.contains("wiped"),
        "{out}"
    );
    assert!(!out.contains("SecretAccessKey"), "{out}");
    assert_eq!(
        records(&home).last().unwrap()["event"],
        "activation withdrawn"
    );
}

/// Waits until the receiver holds `n` bodies (the agent posts the lock's notice in a thread of
/// its own, after its reply): an event awaited, with a bound for a hung agent.
fn bodies_at_least(hook: &Receiver, n: usize) -> Vec<Value> {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let b = hook.bodies();
        if b.len() >= n || std::time::Instant::now() > until {
            return b;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn role_sessions_sign_in_urls_and_the_lock_are_heard_with_their_heads() {
    let test = "role_sessions_sign_in_urls_and_the_lock_are_heard_with_their_heads";
    if !pcsc_ready(test) {
        return;
    }
    let token = SoftToken::approve(0);
    let r = token.reader();
    let sts = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let home = Home::new();
    enrol_at_emulator(&home, &sts, "prod", &r);
    let role_arn = sts.create_role("BreakGlass", true);
    let dir = tempfile::tempdir().unwrap();
    let hook = Receiver::start(dir.path(), &[200]);
    append(
        &home,
        &format!(
            "role_arn = \"{role_arn}\"\n{}",
            webhook(&hook.url, true, Some(&hook.ca_file))
        ),
    );
    // With a role in the profile, the unlock also assumes it: three notices.
    let out = unlock_with(&home, &r, &[]);
    assert!(out.contains("The agent holds the session"), "{out}");

    // A program's credentials are that role session's, and it was heard.
    let o = home
        .command(&["credential-process", "prod"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let creds: Value = serde_json::from_str(&ok(o)).unwrap();
    let bodies = hook.bodies();
    assert_eq!(bodies.len(), 3, "{bodies:#?}");
    let role = &bodies[2]["breakglass"];
    assert_eq!(role["event"], "role assumed");
    assert_eq!(role["temporary_access_key_id"], creds["AccessKeyId"]);
    assert_eq!(
        (&role["password_holder"], &role["token_holder"]),
        (&"Alice".into(), &"Bob".into())
    );
    let detail = role["detail"].as_str().unwrap();
    assert!(
        detail.contains(&role_arn) && detail.contains("/Alice+Bob") && detail.contains("shell"),
        "{detail}"
    );
    assert_eq!(
        role["audit_head"],
        head_after(&home, |r| r["event"] == "role assumed")
    );

    // A sign-in URL: the console's role session and the URL itself, each heard.
    let federation = sts.federation_endpoint();
    let o = home
        .command(&[
            "console",
            "prod",
            "--print",
            "--role-arn",
            &role_arn,
            "--signin-endpoint",
            &federation,
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let url = ok(o);
    let bodies = hook.bodies();
    assert_eq!(bodies.len(), 5, "{bodies:#?}");
    assert_eq!(bodies[3]["breakglass"]["event"], "role assumed");
    assert!(bodies[3]["breakglass"]["detail"]
        .as_str()
        .unwrap()
        .contains("for the console"));
    let signin = &bodies[4]["breakglass"];
    assert_eq!(signin["event"], "console URL made");
    assert_eq!(
        signin["audit_head"],
        head_after(&home, |r| r["event"] == "console sign-in URL")
    );
    // The URL is a secret: never in a notice.
    assert!(!bodies[4].to_string().contains(url.trim()));
    assert!(!bodies[4].to_string().contains("SigninToken"));

    // The lock: the agent wipes the session and tells the webhooks who held it.
    ok(home.command(&["lock", "prod"]).output().unwrap());
    let bodies = bodies_at_least(&hook, 6);
    assert_eq!(bodies.len(), 6, "{bodies:#?}");
    let locked = &bodies[5]["breakglass"];
    assert_eq!(locked["event"], "locked");
    assert_eq!(locked["password_holder"], "Alice");
    assert_eq!(
        locked["temporary_access_key_id"],
        bodies[1]["breakglass"]["temporary_access_key_id"]
    );
    assert_eq!(
        locked["audit_head"],
        head_after(&home, |r| r["event"] == "session wiped")
    );
    // Each delivery is in the log, after its event's record.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while records(&home)
        .iter()
        .filter(|r| r["event"] == "notice")
        .count()
        < 6
        && std::time::Instant::now() < until
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let of: Vec<String> = records(&home)
        .iter()
        .filter(|r| r["event"] == "notice")
        .map(|r| format!("{} {}", r["notice_of"], r["outcome"]))
        .collect();
    assert_eq!(
        of,
        [
            "\"activation attempt\" \"success\"",
            "\"activation granted\" \"success\"",
            "\"role assumed\" \"success\"",
            "\"role assumed\" \"success\"",
            "\"console URL made\" \"success\"",
            "\"locked\" \"success\"",
        ]
    );
}

#[test]
fn a_role_session_a_required_webhook_does_not_take_is_withheld() {
    let test = "a_role_session_a_required_webhook_does_not_take_is_withheld";
    if !pcsc_ready(test) {
        return;
    }
    let token = SoftToken::approve(1);
    let r = token.reader();
    let sts = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let home = Home::new();
    enrol_at_emulator(&home, &sts, "prod", &r);
    let role_arn = sts.create_role("BreakGlass", true);
    let dir = tempfile::tempdir().unwrap();
    // The attempt and the grant are heard; the role's notice gets 500s.
    let hook = Receiver::start(dir.path(), &[200, 200, 500]);
    append(
        &home,
        &format!(
            "role_arn = \"{role_arn}\"\n{}",
            webhook(&hook.url, true, Some(&hook.ca_file))
        ),
    );
    // The unlock assumes the profile's role: its session is not handed out.
    let err = unlock_with(&home, &r, &[]);
    assert!(!err.contains("The agent holds the session"), "{err}");
    assert!(
        err.contains(
            "the role assumed notice could not be delivered to a required channel (webhook:secteam"
        ) && err.contains("nothing was handed out")
            && err.contains("next: "),
        "{err}"
    );
    let log = records(&home);
    let withdrawn = log.last().unwrap();
    assert_eq!(withdrawn["event"], "withdrawn", "{log:#?}");
    assert_eq!(withdrawn["notice_of"], "role assumed");
    let role = log.iter().rfind(|r| r["event"] == "role assumed").unwrap();
    assert_eq!(
        withdrawn["temporary_access_key_id"],
        role["temporary_access_key_id"]
    );
}
