//! `breakglass guardrails`: the AWS side written for a profile enrolled at moto, checked by
//! cfn-lint (templates) and parliament (policies), both from PyPI, deployed into moto's
//! CloudFormation (the break-glass account's stack, and the member stack in a member account
//! of moto's organization), then found by `breakglass drill`.

use crate::common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use common::home::*;
use common::*;

const ROLE: &str = "BreakGlass";
const RULE: &str = "breakglass-role-use";

/// The AWS CLI at moto with `creds` (id, secret, token).
fn aws(aws: &Path, moto: &str, creds: (&str, &str, Option<&str>), args: &[&str]) -> Output {
    let mut cmd = Command::new(aws);
    cmd.args([
        "--endpoint-url",
        moto,
        "--region",
        "us-east-1",
        "--output",
        "json",
    ])
    .args(args)
    .env_remove("AWS_PROFILE")
    .env("AWS_ACCESS_KEY_ID", creds.0)
    .env("AWS_SECRET_ACCESS_KEY", creds.1)
    .env("AWS_CONFIG_FILE", "/dev/null")
    .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    .stdin(Stdio::null());
    match creds.2 {
        Some(t) => cmd.env("AWS_SESSION_TOKEN", t),
        None => cmd.env_remove("AWS_SESSION_TOKEN"),
    };
    cmd.output().unwrap()
}

fn json_ok(o: Output) -> Value {
    let text = ok(o);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// parliament's findings on one policy file (its JSON output, one finding a line).
fn parliament(exe: &Path, file: &Path) -> Vec<Value> {
    let o = Command::new(exe)
        .args(["--json", "--minimum_severity", "LOW"])
        .stdin(std::fs::File::open(file).unwrap())
        .output()
        .unwrap();
    stdout(&o)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn guardrails_without_a_known_user_say_how_to_give_one() {
    let home = Home::new();
    let config = home.config_file();
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(
        &config,
        format!(
            "[profiles.prod]\nvault = \"{}\"\nmfa_account = \"m\"\nseal_account = \"s\"\nregion = \"eu-west-1\"\n",
            home.vault("prod").display()
        ),
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let o = home
        .command(&["guardrails", "prod", "--out", out.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("no IAM user is known yet for profile \"prod\"") && err.contains("--user-arn"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
    // A user ARN that is not one is refused, naming the setting.
    let o = home
        .command(&[
            "guardrails",
            "prod",
            "--out",
            out.path().to_str().unwrap(),
            "--user-arn",
            "arn:aws:iam::123456789012:role/nope",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("is not an IAM user ARN"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn guardrails_pass_cfn_lint_and_parliament_deploy_into_moto_and_the_drill_finds_them() {
    let test = "guardrails_pass_cfn_lint_and_parliament_deploy_into_moto_and_the_drill_finds_them";
    if !pcsc_ready(test) {
        return;
    }
    let Some(cfn_lint) = tool(test, "cfn-lint", "pip install cfn-lint") else {
        return;
    };
    let Some(parliament_exe) = tool(test, "parliament", "pip install parliament") else {
        return;
    };
    let Some(aws_exe) = tool(test, "aws", "pip install 'awscli<2'") else {
        return;
    };
    let Some(moto) = Moto::start(test) else {
        return;
    };
    let rt = rt();
    let user = moto.breakglass_user(&rt);
    user.enable_mfa(&rt);
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
    let mut config = std::fs::read_to_string(home.config_file()).unwrap();
    config += &format!("drill_role = \"{ROLE}\"\ndrill_rule = \"{RULE}\"\n");
    std::fs::write(home.config_file(), config).unwrap();

    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("guardrails");
    let printed = ok(home
        .command(&["guardrails", "prod", "--out", dir.to_str().unwrap()])
        .output()
        .unwrap());
    assert!(
        printed.contains("for arn:aws:iam::123456789012:user/breakglass")
            && printed.contains("README.md"),
        "{printed}"
    );
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    assert!(
        readme.contains("us-east-1")
            && readme.contains("StackSet")
            && readme.contains("scp-member-accounts.json"),
        "{readme}"
    );

    // cfn-lint: no error, no warning, on both templates.
    for t in ["breakglass-account.yaml", "member-accounts.yaml"] {
        let o = Command::new(&cfn_lint)
            .arg(dir.join(t))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "cfn-lint {t}:\n{}{}",
            stdout(&o),
            stderr(&o)
        );
    }
    // parliament: no finding, but one on the trust policy that is parliament's, not the
    // policy's: it reads every document as an identity policy, and a trust policy has no
    // Resource.
    for p in [
        "breakglass-users.json",
        "alert-topic.json",
        "scp-breakglass-account.json",
        "scp-member-accounts.json",
        "breakglass-role-trust.json",
    ] {
        let findings = parliament(&parliament_exe, &dir.join("policies").join(p));
        let real: Vec<&Value> = findings
            .iter()
            .filter(|f| {
                !(p == "breakglass-role-trust.json"
                    && f["issue"] == "MALFORMED"
                    && f["detail"]
                        .as_str()
                        .is_some_and(|d| d.contains("neither Resource nor NotResource")))
            })
            .collect();
        assert!(real.is_empty(), "parliament {p}: {real:#?}");
    }

    // Into moto: an organization with one member account; the member stack there, with the
    // member's own credentials; the break-glass account's stack in the management account.
    let admin = ("AKIAADMIN0000000000", "admin-secret-for-moto", None);
    let org = json_ok(aws(
        &aws_exe,
        &moto.endpoint,
        admin,
        &[
            "organizations",
            "create-organization",
            "--feature-set",
            "ALL",
        ],
    ));
    let org_id = org["Organization"]["Id"].as_str().unwrap().to_owned();
    let made = json_ok(aws(
        &aws_exe,
        &moto.endpoint,
        admin,
        &[
            "organizations",
            "create-account",
            "--account-name",
            "member",
            "--email",
            "member@example.com",
        ],
    ));
    let member = made["CreateAccountStatus"]["AccountId"]
        .as_str()
        .unwrap()
        .to_owned();
    let c = json_ok(aws(
        &aws_exe,
        &moto.endpoint,
        admin,
        &[
            "sts",
            "assume-role",
            "--role-arn",
            &format!("arn:aws:iam::{member}:role/OrganizationAccountAccessRole"),
            "--role-session-name",
            "deploy",
        ],
    ));
    let cr = &c["Credentials"];
    let member_creds = (
        cr["AccessKeyId"].as_str().unwrap(),
        cr["SecretAccessKey"].as_str().unwrap(),
        cr["SessionToken"].as_str(),
    );
    let body = |t: &str| format!("file://{}", dir.join(t).display());
    json_ok(aws(
        &aws_exe,
        &moto.endpoint,
        member_creds,
        &[
            "cloudformation",
            "create-stack",
            "--stack-name",
            "breakglass-member",
            "--template-body",
            &body("member-accounts.yaml"),
            "--capabilities",
            "CAPABILITY_NAMED_IAM",
        ],
    ));
    json_ok(aws(
        &aws_exe,
        &moto.endpoint,
        admin,
        &[
            "cloudformation",
            "create-stack",
            "--stack-name",
            "breakglass-alerts",
            "--template-body",
            &body("breakglass-account.yaml"),
            "--capabilities",
            "CAPABILITY_NAMED_IAM",
            "--parameters",
            &format!("ParameterKey=OrganizationId,ParameterValue={org_id}"),
        ],
    ));
    for (stack, creds) in [
        ("breakglass-member", member_creds),
        ("breakglass-alerts", admin),
    ] {
        let s = json_ok(aws(
            &aws_exe,
            &moto.endpoint,
            creds,
            &["cloudformation", "describe-stacks", "--stack-name", stack],
        ));
        assert_eq!(
            s["Stacks"][0]["StackStatus"], "CREATE_COMPLETE",
            "{stack}: {s:#}"
        );
    }
    // What moto made: the role trusting the user with MFA, the rule, the topic, the user's
    // policy attached.
    let role = json_ok(aws(
        &aws_exe,
        &moto.endpoint,
        member_creds,
        &["iam", "get-role", "--role-name", ROLE],
    ));
    assert_eq!(role["Role"]["MaxSessionDuration"], 3600);
    let trust = role["Role"]["AssumeRolePolicyDocument"].to_string();
    assert!(
        trust.contains("arn:aws:iam::123456789012:user/breakglass")
            && trust.contains("aws:MultiFactorAuthPresent"),
        "{trust}"
    );
    let rule = json_ok(aws(
        &aws_exe,
        &moto.endpoint,
        member_creds,
        &["events", "describe-rule", "--name", RULE],
    ));
    assert_eq!(rule["State"], "ENABLED");
    let topics = json_ok(aws(
        &aws_exe,
        &moto.endpoint,
        admin,
        &["sns", "list-topics"],
    ));
    assert!(
        topics.to_string().contains(":breakglass-alerts"),
        "{topics}"
    );
    let attached = json_ok(aws(
        &aws_exe,
        &moto.endpoint,
        admin,
        &[
            "iam",
            "list-attached-user-policies",
            "--user-name",
            "breakglass",
        ],
    ));
    assert!(
        attached.to_string().contains("breakglass-prod"),
        "{attached}"
    );

    // The drill of the member account finds the role and the rule: nothing to report.
    let file = home.config_file().with_file_name("accounts.txt");
    std::fs::write(&file, format!("{member}\n")).unwrap();
    let mut p = pty(
        home.command(&[
            "drill",
            "prod",
            "--reader",
            &r,
            "--accounts",
            file.to_str().unwrap(),
            "--reason",
            "guardrails deployed",
        ]),
        120_000,
    );
    let ran = answer_until_end(&mut p, || {});
    assert!(
        ran.contains("1 account: 1 passed, 0 with findings, 0 skipped; 0 findings")
            || ran.contains("1 accounts: 1 passed, 0 with findings, 0 skipped; 0 findings"),
        "{ran}"
    );
}
