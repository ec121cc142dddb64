//! The drill's judgements, apart from the calls that gather their facts: a role's trust policy
//! evaluated for the break-glass user and for everyone else, and the break-glass user's MFA
//! devices and keys against the vault.

use crate::aws::iam::{KeyMeta, KeyStatus, UserFacts};
use crate::aws::policy::{arn_account, Decision, Policy, Request};
use crate::config::RotationPolicy;
use crate::secure::mask_key_id;

use super::report::Finding;

/// A principal of another account, to probe a trust policy that names anyone.
const OUTSIDER: &str = "arn:aws:iam::000000000000:user/someone-outside";

/// A trust policy's findings for break-glass users `users` (IAM user ARNs; the first is the
/// profile's), in account `account`, with `source_identity` as the drill sets it.
pub fn trust(
    account: &str,
    document: &str,
    users: &[String],
    source_identity: &str,
) -> Vec<Finding> {
    let finding = |kind, what: String, fix: &str| Finding::account(account, kind, what, fix);
    let policy = match Policy::parse(document) {
        Ok(p) => p,
        Err(e) => {
            return vec![finding(
                "trust-unreadable",
                format!("the role's trust policy cannot be read: {e}"),
                "fix the trust policy document (IAM accepted it, so this is worth a look by hand)",
            )]
        }
    };
    let Some(user) = users.first() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let unknown = |why: &str, check: &str| {
        finding(
            "trust-unevaluable",
            format!("{check} cannot be decided from the trust policy: it uses {why}"),
            "check the trust policy by hand, or simplify it to Bool/String/Arn conditions",
        )
    };
    // The break-glass user, with MFA, may assume it.
    match policy.evaluate(&Request::aws(user, "sts:AssumeRole", Some(true))) {
        Decision::Allow => {}
        Decision::Unknown(why) => out.push(unknown(
            why,
            "whether the break-glass user may assume the role",
        )),
        _ => out.push(finding(
            "trust-no-user",
            format!("the trust policy does not allow {user} to assume the role"),
            "name the break-glass user as the Principal of an Allow of sts:AssumeRole",
        )),
    }
    // Not without MFA: neither with a long-term key (no MFA key in the request) nor with
    // temporary credentials made without MFA.
    for (mfa, how) in [
        (None, "with its long-term key"),
        (Some(false), "with a session made without MFA"),
    ] {
        match policy.evaluate(&Request::aws(user, "sts:AssumeRole", mfa)) {
            Decision::Allow => {
                out.push(finding(
                    "trust-no-mfa",
                    format!("the trust policy lets the break-glass user assume the role {how}: MFA is not required"),
                    "add the condition \"Bool\": {\"aws:MultiFactorAuthPresent\": \"true\"} (not BoolIfExists) to the Allow",
                ));
                break;
            }
            Decision::Unknown(why) => {
                out.push(unknown(why, "whether MFA is required"));
                break;
            }
            _ => {}
        }
    }
    // SourceIdentity, which every hand-out sets.
    let mut set = Request::aws(user, "sts:SetSourceIdentity", Some(true));
    set.set("sts:SourceIdentity", source_identity);
    match policy.evaluate(&set) {
        Decision::Allow => {}
        Decision::Unknown(why) => out.push(unknown(why, "whether sts:SetSourceIdentity is allowed")),
        _ => out.push(finding(
            "trust-no-source-identity",
            "the trust policy does not allow sts:SetSourceIdentity: every break-glass hand-out would be refused".to_owned(),
            "add sts:SetSourceIdentity to the Actions of the Allow that names the break-glass user",
        )),
    }
    // Nobody else.
    let mut others = Vec::new();
    for named in policy.allowed_principals("sts:AssumeRole") {
        if users.contains(&named) {
            continue;
        }
        let probes: Vec<String> = if named == "*" {
            let home = arn_account(user).unwrap_or("000000000000");
            vec![
                OUTSIDER.to_owned(),
                format!("arn:aws:iam::{home}:user/someone-else"),
            ]
        } else if let Some(acct) = named
            .strip_suffix(":root")
            .and_then(arn_account)
            .or_else(|| {
                (named.len() == 12 && named.bytes().all(|b| b.is_ascii_digit()))
                    .then_some(named.as_str())
            })
        {
            vec![format!("arn:aws:iam::{acct}:user/someone-else")]
        } else {
            vec![named.clone()]
        };
        for probe in probes {
            match policy.evaluate(&Request::aws(&probe, "sts:AssumeRole", Some(true))) {
                Decision::Allow | Decision::Unknown(_) => {
                    others.push(if named == "*" {
                        "anyone".to_owned()
                    } else {
                        named.clone()
                    });
                    break;
                }
                _ => {}
            }
        }
    }
    if !others.is_empty() {
        out.push(finding(
            "trust-others",
            format!(
                "the trust policy lets more than the break-glass user assume the role: {}",
                others.join(", ")
            ),
            "name only the break-glass user(s) as Principal (an account's root trusts everyone in it)",
        ));
    }
    out
}

/// The break-glass user's findings: its MFA devices against the vault's, its keys, their age.
pub fn user(
    facts: &UserFacts,
    vault_devices: &[String],
    keys: &[KeyMeta],
    vault_key: Option<&str>,
    policy: &RotationPolicy,
    now: u64,
) -> Vec<Finding> {
    let mut out = Vec::new();
    for d in facts
        .mfa_devices
        .iter()
        .filter(|d| !vault_devices.contains(d))
    {
        out.push(Finding::user(
            "mfa-unknown-device",
            format!("the user has an MFA device that no token in the vault holds: {d}"),
            "find out who enrolled it; deactivate it (iam deactivate-mfa-device) unless it is a token in a safe that should be added with `breakglass enroll --add-token`",
        ));
    }
    for d in vault_devices
        .iter()
        .filter(|d| !facts.mfa_devices.contains(d))
    {
        out.push(Finding::user(
            "mfa-device-missing",
            format!("the vault's token for MFA device {d} is no longer enabled on the user"),
            "re-enrol that token (`breakglass enroll --add-token`) and remove its old slot (`breakglass rekey --remove-token`)",
        ));
    }
    let Some(vault_key) = vault_key else {
        // A vault of format 1 does not say its key outside the sealed payload (a drill on the
        // agent's live session never opens it): only the count can be judged.
        let active = keys
            .iter()
            .filter(|k| k.status == KeyStatus::Active)
            .count();
        if active > 1 {
            out.push(Finding::user(
                "key-second",
                format!("the user has {active} active access keys; one is the vault's"),
                "unless a rotation is under way, find out who made the other and delete it",
            ));
        }
        return out_with_password(out, facts);
    };
    let vault = keys.iter().find(|k| k.access_key_id == vault_key);
    match vault {
        None => out.push(Finding::user(
            "key-missing",
            format!(
                "the vault's access key {} is not among the user's keys",
                mask_key_id(vault_key)
            ),
            "the vault is stale: find the current vault, or rotate (`breakglass rotate`)",
        )),
        Some(k) if k.status == KeyStatus::Inactive => out.push(Finding::user(
            "key-inactive",
            format!(
                "the vault's access key {} is inactive",
                mask_key_id(vault_key)
            ),
            "reactivate it (iam update-access-key --status Active) or rotate",
        )),
        Some(k) => {
            let days = now.saturating_sub(k.created) / 86_400;
            if k.created > 0 && days >= u64::from(policy.rotate_after_days) {
                out.push(Finding::user(
                    "key-old",
                    format!(
                        "the vault's access key is {days} days old; the policy rotates after {}",
                        policy.rotate_after_days
                    ),
                    "rotate it: `breakglass rotate PROFILE`",
                ));
            }
        }
    }
    let others: Vec<&KeyMeta> = keys
        .iter()
        .filter(|k| k.access_key_id != vault_key && k.status == KeyStatus::Active)
        .collect();
    for k in others {
        out.push(Finding::user(
            "key-second",
            format!(
                "the user has a second active access key {} that is not the vault's",
                mask_key_id(&k.access_key_id)
            ),
            "unless a rotation is under way (`breakglass rotate --check`), find out who made it and delete it",
        ));
    }
    out_with_password(out, facts)
}

fn out_with_password(mut out: Vec<Finding>, facts: &UserFacts) -> Vec<Finding> {
    if facts.console_password {
        out.push(Finding::user(
            "console-password",
            "the user has a console password: whoever knows it and holds the MFA token signs in alone, outside the two-person rule and the audit log",
            "delete it (iam delete-login-profile) unless your runbook keeps it, sealed, on purpose",
        ));
    }
    out
}

/// One IAM user's keys in a member account, for `--audit-keys`: each key, and when it was
/// last used (`None`: never).
pub struct UserKeys {
    /// The user's name.
    pub user: String,
    /// Its keys, each with its last use (Unix seconds).
    pub keys: Vec<(KeyMeta, Option<u64>)>,
}

/// `--audit-keys` findings of account `account`: keys created more than `days` ago, keys not
/// used for `days` (or never, when older than that), users with two active keys.
pub fn audit_keys(account: &str, users: &[UserKeys], days: u32, now: u64) -> Vec<Finding> {
    let limit = u64::from(days) * 86_400;
    let old = |t: u64| t > 0 && now.saturating_sub(t) > limit;
    let mut out = Vec::new();
    for u in users {
        let active: Vec<_> = u
            .keys
            .iter()
            .filter(|(k, _)| k.status == KeyStatus::Active)
            .collect();
        if active.len() > 1 {
            out.push(Finding::account(
                account,
                "iam-user-two-keys",
                format!(
                    "IAM user {} has {} active access keys",
                    u.user,
                    active.len()
                ),
                "keep one: deactivate and delete the other once nothing uses it",
            ));
        }
        for (k, used) in active {
            let id = mask_key_id(&k.access_key_id);
            if old(k.created) {
                out.push(Finding::account(
                    account,
                    "iam-key-old",
                    format!(
                        "IAM user {}'s access key {id} is {} days old (policy: {days})",
                        u.user,
                        now.saturating_sub(k.created) / 86_400
                    ),
                    "rotate it (a new key, the old one deactivated, then deleted)",
                ));
            }
            let unused = match used {
                Some(t) => old(*t),
                None => old(k.created),
            };
            if unused {
                out.push(Finding::account(
                    account,
                    "iam-key-unused",
                    format!(
                        "IAM user {}'s access key {id} has not been used for {days} days",
                        u.user
                    ),
                    "deactivate it; delete it if nothing complains",
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER: &str = "arn:aws:iam::123456789012:user/breakglass";

    fn kinds(doc: &str) -> Vec<&'static str> {
        trust("100000000001", doc, &[USER.to_owned()], "alice+bob")
            .iter()
            .map(|f| f.kind)
            .collect()
    }

    fn doc(principal: &str, condition: &str, actions: &str) -> String {
        format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{principal},"Action":{actions}{condition}}}]}}"#
        )
    }

    const MFA: &str = r#","Condition":{"Bool":{"aws:MultiFactorAuthPresent":"true"}}"#;
    const BOTH: &str = r#"["sts:AssumeRole","sts:SetSourceIdentity"]"#;

    #[test]
    fn a_sound_trust_policy_has_no_finding() {
        let user = format!(r#"{{"AWS":"{USER}"}}"#);
        assert!(kinds(&doc(&user, MFA, BOTH)).is_empty());
    }

    #[test]
    fn each_drift_is_its_own_finding() {
        let user = format!(r#"{{"AWS":"{USER}"}}"#);
        assert_eq!(kinds(&doc(&user, "", BOTH)), ["trust-no-mfa"]);
        let if_exists = r#","Condition":{"BoolIfExists":{"aws:MultiFactorAuthPresent":"true"}}"#;
        assert_eq!(kinds(&doc(&user, if_exists, BOTH)), ["trust-no-mfa"]);
        assert_eq!(
            kinds(&doc(&user, MFA, r#""sts:AssumeRole""#)),
            ["trust-no-source-identity"]
        );
        let root = r#"{"AWS":"arn:aws:iam::123456789012:root"}"#;
        assert_eq!(kinds(&doc(root, MFA, BOTH)), ["trust-others"]);
        assert_eq!(kinds(&doc(r#""*""#, MFA, BOTH)), ["trust-others"]);
        let other = r#"{"AWS":"arn:aws:iam::123456789012:user/admin"}"#;
        // Another user instead of the break-glass one: three findings, each true.
        assert_eq!(
            kinds(&doc(other, MFA, BOTH)),
            ["trust-no-user", "trust-no-source-identity", "trust-others"]
        );
        assert_eq!(kinds("{not json"), ["trust-unreadable"]);
        let date = r#","Condition":{"DateLessThan":{"aws:CurrentTime":"2030-01-01T00:00:00Z"}}"#;
        assert!(kinds(&doc(&user, date, BOTH)).contains(&"trust-unevaluable"));
    }

    #[test]
    fn an_account_root_narrowed_by_a_condition_is_not_a_finding() {
        // Trusting the account, with a condition that admits only the break-glass user: evaluated,
        // not pattern-matched.
        let root = r#"{"AWS":"arn:aws:iam::123456789012:root"}"#;
        let cond = format!(
            r#","Condition":{{"Bool":{{"aws:MultiFactorAuthPresent":"true"}},"ArnEquals":{{"aws:PrincipalArn":"{USER}"}}}}"#
        );
        assert!(kinds(&doc(root, &cond, BOTH)).is_empty());
    }

    fn key(id: &str, status: KeyStatus, created: u64) -> KeyMeta {
        KeyMeta {
            access_key_id: id.into(),
            status,
            created,
        }
    }

    #[test]
    fn audited_keys_past_the_policy_are_findings() {
        let day = 86_400;
        let now = 400 * day;
        let users = [
            UserKeys {
                user: "ci".into(),
                keys: vec![
                    (
                        key("AKIAOLDUSEDKEY000001", KeyStatus::Active, 200 * day),
                        Some(now - day),
                    ),
                    (
                        key("AKIANEWKEYNEVERUSED2", KeyStatus::Active, now - day),
                        None,
                    ),
                ],
            },
            UserKeys {
                user: "legacy".into(),
                keys: vec![
                    (
                        key("AKIASTALEKEY00000003", KeyStatus::Active, 300 * day),
                        Some(301 * day),
                    ),
                    (
                        key("AKIAINACTIVE00000004", KeyStatus::Inactive, 10 * day),
                        None,
                    ),
                ],
            },
            UserKeys {
                user: "fresh".into(),
                keys: vec![(
                    key("AKIAFRESHKEY00000005", KeyStatus::Active, now - day),
                    None,
                )],
            },
        ];
        let found: Vec<_> = audit_keys("111122223333", &users, 90, now)
            .into_iter()
            .map(|f| (f.kind, f.what))
            .collect();
        let kinds: Vec<_> = found.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            kinds,
            [
                "iam-user-two-keys",
                "iam-key-old",
                "iam-key-old",
                "iam-key-unused"
            ],
            "{found:?}"
        );
        assert!(found[1]
            .1
            .contains("ci's access key ****************0001 is 200 days old"));
        assert!(found[3].1.contains("legacy"));
        assert!(
            found.iter().all(|(_, w)| !w.contains("OLDUSEDKEY")),
            "masked"
        );
    }

    #[test]
    fn the_users_devices_and_keys_are_compared_with_the_vault() {
        let now = 200 * 86_400;
        let policy = RotationPolicy::default();
        let facts = UserFacts {
            mfa_devices: vec!["arn:aws:iam::1:mfa/a".into(), "arn:aws:iam::1:mfa/x".into()],
            console_password: true,
            ..UserFacts::default()
        };
        let vault = [
            "arn:aws:iam::1:mfa/a".to_owned(),
            "arn:aws:iam::1:mfa/b".to_owned(),
        ];
        let keys = [
            key("AKIAVAULTKEY00000001", KeyStatus::Active, 190 * 86_400),
            key("AKIAOTHERKEY00000002", KeyStatus::Active, 190 * 86_400),
        ];
        let found: Vec<_> = user(
            &facts,
            &vault,
            &keys,
            Some("AKIAVAULTKEY00000001"),
            &policy,
            now,
        )
        .iter()
        .map(|f| f.kind)
        .collect();
        assert_eq!(
            found,
            [
                "mfa-unknown-device",
                "mfa-device-missing",
                "key-second",
                "console-password"
            ]
        );
        let old = [key("AKIAVAULTKEY00000001", KeyStatus::Active, 10 * 86_400)];
        let clean = UserFacts {
            mfa_devices: vault.to_vec(),
            ..UserFacts::default()
        };
        let f = user(
            &clean,
            &vault,
            &old,
            Some("AKIAVAULTKEY00000001"),
            &policy,
            now,
        );
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].kind, "key-old");
        assert!(f[0].what.contains("190 days"), "{}", f[0].what);
        let inactive = [key("AKIAVAULTKEY00000001", KeyStatus::Inactive, now)];
        let f = user(
            &clean,
            &vault,
            &inactive,
            Some("AKIAVAULTKEY00000001"),
            &policy,
            now,
        );
        assert_eq!(f[0].kind, "key-inactive");
        let f = user(
            &clean,
            &vault,
            &[],
            Some("AKIAVAULTKEY00000001"),
            &policy,
            now,
        );
        assert_eq!(f[0].kind, "key-missing");
        // The vault's key unknown (format 1, live session): two active keys are still one too many.
        let two = [
            key("AKIAVAULTKEY00000001", KeyStatus::Active, now),
            key("AKIAOTHERKEY00000002", KeyStatus::Active, now),
        ];
        let f = user(&clean, &vault, &two, None, &policy, now);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].kind, "key-second");
        assert!(user(&clean, &vault, &two[..1], None, &policy, now).is_empty());
        assert!(
            !f[0].what.contains("VAULTKEY"),
            "the key id is masked: {}",
            f[0].what
        );
    }
}
