//! `breakglass guardrails`: the AWS side of break-glass access for a profile's users, written
//! as CloudFormation templates (YAML) and plain JSON policies, with a README saying where each
//! piece goes and in what order.
//!
//! - The break-glass account (`breakglass-account.yaml`, us-east-1, where IAM and sign-in
//!   events arrive): the alert topic and its policy, an event bus the member accounts forward
//!   to, EventBridge rules for the users' `GetSessionToken`, `AssumeRole` and `ConsoleLogin`
//!   and for changes to the users themselves, and the users' own policy (exactly what
//!   breakglass calls, nothing else).
//! - Every member account (`member-accounts.yaml`, a StackSet): the break-glass role, trusting
//!   those users only, with MFA, allowing `sts:SetSourceIdentity`, a maximum session; a rule
//!   forwarding the role's use to the break-glass account's bus.
//! - Service control policies: the break-glass account's (deny all but what the users and the
//!   platform team need) and the member accounts' (nobody but the deployment role changes the
//!   role or the rule).
//!
//! Pure: the inputs in, the files out; the command writes them.

mod yaml;

use serde_json::{json, Value};

pub use yaml::to_yaml;

/// What the AWS side is made for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// The profile (named in descriptions).
    pub profile: String,
    /// The break-glass users' ARNs, the profile's first; all in one account.
    pub users: Vec<String>,
    /// The break-glass role's name in every member account.
    pub role_name: String,
    /// The alert topic's name (in the break-glass account, us-east-1).
    pub topic_name: String,
    /// The member accounts' alert rule's name (the drill's `drill_rule`).
    pub rule_name: String,
    /// The role's `MaxSessionDuration`, seconds (3600..=43200).
    pub max_session_secs: u64,
    /// The role that deploys these stacks (StackSet execution): the only one the member SCP
    /// lets change the role and the rule.
    pub deployer_role: String,
    /// The role the platform team operates the break-glass account with.
    pub operator_role: String,
}

/// Why the AWS side cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A user ARN is not `arn:PARTITION:iam::ACCOUNT:user/NAME`.
    #[error("{arn:?} is not an IAM user ARN (arn:aws:iam::ACCOUNT:user/NAME)")]
    NotAUser {
        /// What was given.
        arn: String,
    },
    /// The users are in more than one account or partition.
    #[error("the break-glass users are in more than one account ({first} and {other}); write the guardrails of each account's users separately")]
    SeveralAccounts {
        /// The first user's ARN.
        first: String,
        /// One in another account.
        other: String,
    },
    /// A name AWS would refuse.
    #[error("{what} {name:?} is not a valid name: {rule}")]
    BadName {
        /// Which setting.
        what: &'static str,
        /// Its value.
        name: String,
        /// AWS's rule.
        rule: &'static str,
    },
    /// A maximum session AWS would refuse.
    #[error("the role's maximum session of {secs} s is out of AWS's range (3600 to 43200 s)")]
    MaxSession {
        /// What was asked.
        secs: u64,
    },
}

/// The parts of a user's ARN.
struct User<'a> {
    partition: &'a str,
    account: &'a str,
    name: &'a str,
}

fn user(arn: &str) -> Result<User<'_>, Error> {
    let bad = || Error::NotAUser {
        arn: arn.to_owned(),
    };
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [_, partition, service, region, account, resource] = parts[..] else {
        return Err(bad());
    };
    let name = resource.strip_prefix("user/").ok_or_else(bad)?;
    // A path (`user/ops/name`) is allowed; the name is its last part.
    let name = name.rsplit('/').next().unwrap_or_default();
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c));
    if parts[0] != "arn"
        || !partition.starts_with("aws")
        || service != "iam"
        || !region.is_empty()
        || !crate::config::is_account_id(account)
        || !name_ok
    {
        return Err(bad());
    }
    Ok(User {
        partition,
        account,
        name,
    })
}

fn check_name(what: &'static str, name: &str, max: usize, extra: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= max
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::BadName {
            what,
            name: name.to_owned(),
            rule: "letters, digits and a few punctuation marks (IAM: +=,.@_-; SNS and EventBridge: _-), up to 64 characters",
        })
    }
}

/// One file of the output: its path under the output directory, and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// Relative path (`breakglass-account.yaml`, `policies/scp-member-accounts.json`).
    pub path: &'static str,
    /// The contents.
    pub text: String,
}

/// Which files to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// CloudFormation templates (YAML) and the README.
    Cloudformation,
    /// Plain JSON policies and the README.
    Json,
    /// Both.
    All,
}

/// The region where IAM's and the sign-in's CloudTrail events reach EventBridge.
pub const EVENTS_REGION: &str = "us-east-1";

/// The names and documents every output shares.
struct Made<'a> {
    input: &'a Input,
    partition: &'a str,
    account: &'a str,
    names: Vec<&'a str>,
}

impl Made<'_> {
    fn topic_arn(&self) -> String {
        format!(
            "arn:{}:sns:{EVENTS_REGION}:{}:{}",
            self.partition, self.account, self.input.topic_name
        )
    }

    fn bus_arn(&self) -> String {
        format!(
            "arn:{}:events:{EVENTS_REGION}:{}:event-bus/{}",
            self.partition,
            self.account,
            self.bus_name()
        )
    }

    fn bus_name(&self) -> String {
        format!("{}-bus", self.input.topic_name)
    }

    fn role_pattern(&self) -> String {
        format!(
            "arn:{}:iam::*:role/{}",
            self.partition, self.input.role_name
        )
    }

    /// AWS's service-linked roles: the account's own services keep working.
    fn service_roles(&self) -> String {
        format!("arn:{}:iam::*:role/aws-service-role/*", self.partition)
    }

    fn principal_pattern(&self, role: &str) -> String {
        format!("arn:{}:iam::*:role/{role}", self.partition)
    }

    /// The users' own policy: what breakglass calls with the MFA session, nothing else.
    fn user_policy(&self) -> Value {
        let mfa = json!({"Bool": {"aws:MultiFactorAuthPresent": "true"}});
        json!({
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "RotateOwnAccessKeyWithMFA",
                    "Effect": "Allow",
                    "Action": [
                        "iam:CreateAccessKey",
                        "iam:DeleteAccessKey",
                        "iam:GetAccessKeyLastUsed",
                        "iam:ListAccessKeys",
                        "iam:UpdateAccessKey"
                    ],
                    "Resource": self.input.users,
                    "Condition": mfa
                },
                {
                    "Sid": "ReadOwnMFAAndLoginWithMFA",
                    "Effect": "Allow",
                    "Action": [
                        "iam:GetLoginProfile",
                        "iam:ListAttachedUserPolicies",
                        "iam:ListMFADevices",
                        "iam:ListUserPolicies",
                        "iam:ResyncMFADevice"
                    ],
                    "Resource": self.input.users,
                    "Condition": mfa
                },
                {
                    "Sid": "AssumeBreakGlassRoleWithMFA",
                    "Effect": "Allow",
                    "Action": ["sts:AssumeRole", "sts:SetSourceIdentity"],
                    "Resource": self.role_pattern(),
                    "Condition": mfa
                },
                {
                    "Sid": "PublishAlertsWithMFA",
                    "Effect": "Allow",
                    "Action": "sns:Publish",
                    "Resource": self.topic_arn(),
                    "Condition": mfa
                },
                {
                    "Sid": "DrillReadsTheOrganization",
                    "Effect": "Allow",
                    "Action": [
                        "organizations:DescribeOrganization",
                        "organizations:ListAccounts",
                        "organizations:ListAccountsForParent",
                        "organizations:ListOrganizationalUnitsForParent"
                    ],
                    "Resource": "*",
                    "Condition": mfa
                },
                {
                    "Sid": "ReportLooksUpEvents",
                    "Effect": "Allow",
                    "Action": "cloudtrail:LookupEvents",
                    "Resource": "*",
                    "Condition": mfa
                }
            ]
        })
    }

    /// The member role's trust: those users, with MFA; AssumeRole and SetSourceIdentity.
    fn trust_policy(&self) -> Value {
        json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": "BreakGlassUsersWithMFA",
                "Effect": "Allow",
                "Principal": {"AWS": self.input.users},
                "Action": ["sts:AssumeRole", "sts:SetSourceIdentity"],
                "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "true"}}
            }]
        })
    }

    /// The alert topic's policy: EventBridge of this account, and the users (with MFA).
    fn topic_policy(&self, topic: Value) -> Value {
        json!({
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "EventBridgeOfThisAccount",
                    "Effect": "Allow",
                    "Principal": {"Service": "events.amazonaws.com"},
                    "Action": "sns:Publish",
                    "Resource": topic,
                    "Condition": {"StringEquals": {"aws:SourceAccount": self.account}}
                },
                {
                    "Sid": "BreakGlassUsersWithMFA",
                    "Effect": "Allow",
                    "Principal": {"AWS": self.input.users},
                    "Action": "sns:Publish",
                    "Resource": topic,
                    "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "true"}}
                }
            ]
        })
    }

    /// The break-glass account's SCP: the users may do only what breakglass needs; nobody but
    /// the users and the platform team acts in the account; nobody but the platform team
    /// touches the alerting.
    fn scp_account(&self) -> Value {
        let operator = self.principal_pattern(&self.input.operator_role);
        let deployer = self.principal_pattern(&self.input.deployer_role);
        json!({
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "BreakGlassUsersOnlyWhatBreakglassNeeds",
                    "Effect": "Deny",
                    "NotAction": [
                        "iam:CreateAccessKey",
                        "iam:DeleteAccessKey",
                        "iam:GetAccessKeyLastUsed",
                        "iam:GetLoginProfile",
                        "iam:ListAccessKeys",
                        "iam:ListAttachedUserPolicies",
                        "iam:ListMFADevices",
                        "iam:ListUserPolicies",
                        "iam:ResyncMFADevice",
                        "sts:AssumeRole",
                        "sts:GetCallerIdentity",
                        "sts:GetSessionToken",
                        "sts:SetSourceIdentity",
                        "sns:Publish",
                        "organizations:DescribeOrganization",
                        "organizations:ListAccounts",
                        "organizations:ListAccountsForParent",
                        "organizations:ListOrganizationalUnitsForParent",
                        "cloudtrail:LookupEvents"
                    ],
                    "Resource": "*",
                    "Condition": {"ArnLike": {"aws:PrincipalArn": self.input.users}}
                },
                {
                    "Sid": "NobodyElseButThePlatformTeam",
                    "Effect": "Deny",
                    "Action": "*",
                    "Resource": "*",
                    "Condition": {"ArnNotLike": {"aws:PrincipalArn":
                        self.input.users.iter().cloned()
                            .chain([operator.clone(), deployer.clone(), self.service_roles()])
                            .collect::<Vec<_>>()}}
                },
                {
                    "Sid": "AlertingOnlyByThePlatformTeam",
                    "Effect": "Deny",
                    "Action": [
                        "events:DeleteRule",
                        "events:DisableRule",
                        "events:PutRule",
                        "events:PutTargets",
                        "events:RemoveTargets",
                        "events:DeleteEventBus",
                        "events:PutPermission",
                        "events:RemovePermission",
                        "sns:DeleteTopic",
                        "sns:SetTopicAttributes",
                        "sns:RemovePermission",
                        "sns:AddPermission",
                        "sns:Unsubscribe",
                        "cloudtrail:DeleteTrail",
                        "cloudtrail:StopLogging",
                        "cloudtrail:UpdateTrail",
                        "cloudtrail:PutEventSelectors"
                    ],
                    "Resource": "*",
                    "Condition": {"ArnNotLike": {"aws:PrincipalArn": [operator, deployer]}}
                }
            ]
        })
    }

    /// The member accounts' SCP: the role and the rule change only by the deployment role.
    fn scp_members(&self) -> Value {
        let deployer = self.principal_pattern(&self.input.deployer_role);
        json!({
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "ProtectTheBreakGlassRole",
                    "Effect": "Deny",
                    "Action": [
                        "iam:AttachRolePolicy",
                        "iam:DeleteRole",
                        "iam:DeleteRolePermissionsBoundary",
                        "iam:DeleteRolePolicy",
                        "iam:DetachRolePolicy",
                        "iam:PutRolePermissionsBoundary",
                        "iam:PutRolePolicy",
                        "iam:TagRole",
                        "iam:UntagRole",
                        "iam:UpdateAssumeRolePolicy",
                        "iam:UpdateRole",
                        "iam:UpdateRoleDescription"
                    ],
                    "Resource": self.role_pattern(),
                    "Condition": {"ArnNotLike": {"aws:PrincipalArn": deployer}}
                },
                {
                    "Sid": "ProtectTheAlertRule",
                    "Effect": "Deny",
                    "Action": [
                        "events:DeleteRule",
                        "events:DisableRule",
                        "events:PutRule",
                        "events:PutTargets",
                        "events:RemoveTargets",
                        "events:TagResource",
                        "events:UntagResource"
                    ],
                    "Resource": format!("arn:{}:events:*:*:rule/{}", self.partition, self.input.rule_name),
                    "Condition": {"ArnNotLike": {"aws:PrincipalArn": deployer}}
                }
            ]
        })
    }

    /// CloudTrail events of `source`/`names` by the users, as an EventBridge pattern.
    fn by_users(&self, source: &str, detail_type: &str, names: &[&str]) -> Value {
        json!({
            "source": [source],
            "detail-type": [detail_type],
            "detail": {
                "eventName": names,
                "userIdentity": {"arn": self.input.users}
            }
        })
    }

    fn rule(&self, description: &str, pattern: Value, bus: Option<Value>) -> Value {
        let mut props = json!({
            "Description": description,
            "State": "ENABLED",
            "EventPattern": pattern,
            "Targets": [{"Arn": {"Ref": "AlertTopic"}, "Id": "alert-topic"}]
        });
        match bus {
            // The bus by name, after it exists: moto's CloudFormation resolves a `Ref` to an
            // event bus as an object instead of its name (AWS gives the name either way).
            Some(bus) => {
                props["EventBusName"] = bus;
                json!({"Type": "AWS::Events::Rule", "DependsOn": "MemberEventBus", "Properties": props})
            }
            None => json!({"Type": "AWS::Events::Rule", "Properties": props}),
        }
    }

    fn account_template(&self) -> Value {
        let api = "AWS API Call via CloudTrail";
        let topic = json!({"Ref": "AlertTopic"});
        json!({
            "AWSTemplateFormatVersion": "2010-09-09",
            "Description": format!(
                "breakglass guardrails of profile {}: alerts on the break-glass users' activity (deploy in {EVENTS_REGION} of account {})",
                self.input.profile, self.account
            ),
            "Parameters": {
                "OrganizationId": {
                    "Type": "String",
                    "Description": "The organization's id (o-...): its accounts may forward the break-glass role's use to the bus",
                    "AllowedPattern": "^o-[a-z0-9]{10,32}$"
                },
                "AlertEmail": {
                    "Type": "String",
                    "Default": "",
                    "Description": "An address subscribed to the alert topic (empty: none; subscribe the team's tools yourself)"
                }
            },
            "Conditions": {
                "HasEmail": {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlertEmail"}, ""]}]}
            },
            "Resources": {
                "AlertTopic": {
                    "Type": "AWS::SNS::Topic",
                    "Properties": {"TopicName": self.input.topic_name}
                },
                "AlertTopicPolicy": {
                    "Type": "AWS::SNS::TopicPolicy",
                    "Properties": {
                        "Topics": [topic],
                        "PolicyDocument": self.topic_policy(topic.clone())
                    }
                },
                "AlertEmailSubscription": {
                    "Type": "AWS::SNS::Subscription",
                    "Condition": "HasEmail",
                    "Properties": {"TopicArn": topic, "Protocol": "email", "Endpoint": {"Ref": "AlertEmail"}}
                },
                "ActivationRule": self.rule(
                    "breakglass: a break-glass user called GetSessionToken (an activation) or AssumeRole",
                    self.by_users("aws.sts", api, &["GetSessionToken", "AssumeRole"]),
                    None,
                ),
                "ConsoleLoginRule": self.rule(
                    "breakglass: a break-glass user signed in to the console",
                    self.by_users("aws.signin", "AWS Console Sign In via CloudTrail", &["ConsoleLogin"]),
                    None,
                ),
                "UserChangeRule": self.rule(
                    "breakglass: a break-glass user's keys, MFA devices, password or policies changed",
                    json!({
                        "source": ["aws.iam"],
                        "detail-type": [api],
                        "detail": {
                            "eventName": [
                                "AddUserToGroup", "AttachUserPolicy", "CreateAccessKey",
                                "CreateLoginProfile", "DeactivateMFADevice", "DeleteAccessKey",
                                "DeleteLoginProfile", "DeleteUser", "DeleteUserPermissionsBoundary",
                                "DeleteUserPolicy", "DetachUserPolicy", "EnableMFADevice",
                                "PutUserPermissionsBoundary", "PutUserPolicy", "RemoveUserFromGroup",
                                "ResyncMFADevice", "UpdateAccessKey", "UpdateLoginProfile", "UpdateUser"
                            ],
                            "requestParameters": {"userName": self.names}
                        }
                    }),
                    None,
                ),
                "MemberEventBus": {
                    "Type": "AWS::Events::EventBus",
                    "Properties": {"Name": self.bus_name()}
                },
                "MemberEventBusPolicy": {
                    "Type": "AWS::Events::EventBusPolicy",
                    "Properties": {
                        "EventBusName": self.bus_name(),
                        "StatementId": "OrganizationMembersForward",
                        "Statement": {
                            "Effect": "Allow",
                            "Principal": "*",
                            "Action": "events:PutEvents",
                            "Resource": {"Fn::GetAtt": ["MemberEventBus", "Arn"]},
                            "Condition": {"StringEquals": {"aws:PrincipalOrgID": {"Ref": "OrganizationId"}}}
                        }
                    }
                },
                "MemberUseRule": self.rule(
                    "breakglass: the break-glass role was used in a member account (forwarded)",
                    json!({"source": ["aws.sts", "aws.signin"]}),
                    Some(Value::String(self.bus_name())),
                ),
                "BreakGlassUserPolicy": {
                    "Type": "AWS::IAM::ManagedPolicy",
                    "Properties": {
                        "ManagedPolicyName": format!("breakglass-{}", self.input.profile_slug()),
                        "Description": "What breakglass calls with the two-person MFA session, nothing else",
                        "Users": self.names,
                        "PolicyDocument": self.user_policy()
                    }
                }
            },
            "Outputs": {
                "AlertTopicArn": {"Value": topic},
                "MemberEventBusArn": {"Value": {"Fn::GetAtt": ["MemberEventBus", "Arn"]}}
            }
        })
    }

    fn member_template(&self) -> Value {
        json!({
            "AWSTemplateFormatVersion": "2010-09-09",
            "Description": format!(
                "breakglass guardrails of profile {}: the break-glass role and its alert rule in every member account (a StackSet)",
                self.input.profile
            ),
            "Parameters": {
                "RolePolicyArn": {
                    "Type": "String",
                    "Default": format!("arn:{}:iam::aws:policy/AdministratorAccess", self.partition),
                    "Description": "What the break-glass role may do (a managed policy's ARN)"
                }
            },
            "Resources": {
                "BreakGlassRole": {
                    "Type": "AWS::IAM::Role",
                    "Properties": {
                        "RoleName": self.input.role_name,
                        "Description": "Break-glass access: assumed only by the break-glass users, with MFA",
                        "MaxSessionDuration": self.input.max_session_secs,
                        "AssumeRolePolicyDocument": self.trust_policy(),
                        "ManagedPolicyArns": [{"Ref": "RolePolicyArn"}]
                    }
                },
                "ForwardRole": {
                    "Type": "AWS::IAM::Role",
                    "Properties": {
                        "Description": "EventBridge forwards the break-glass role's use to the break-glass account",
                        "AssumeRolePolicyDocument": {
                            "Version": "2012-10-17",
                            "Statement": [{
                                "Effect": "Allow",
                                "Principal": {"Service": "events.amazonaws.com"},
                                "Action": "sts:AssumeRole"
                            }]
                        },
                        "Policies": [{
                            "PolicyName": "forward-to-the-break-glass-bus",
                            "PolicyDocument": {
                                "Version": "2012-10-17",
                                "Statement": [{
                                    "Effect": "Allow",
                                    "Action": "events:PutEvents",
                                    "Resource": self.bus_arn()
                                }]
                            }
                        }]
                    }
                },
                "AlertRule": {
                    "Type": "AWS::Events::Rule",
                    "Properties": {
                        "Name": self.input.rule_name,
                        "Description": "breakglass: the break-glass role was assumed or signed in with",
                        "State": "ENABLED",
                        "EventPattern": {
                            "source": ["aws.sts", "aws.signin"],
                            "detail-type": ["AWS API Call via CloudTrail", "AWS Console Sign In via CloudTrail"],
                            "detail": {
                                "eventName": ["AssumeRole", "ConsoleLogin"],
                                "$or": [
                                    {"requestParameters": {"roleArn": [{"wildcard": format!("arn:{}:iam::*:role/{}", self.partition, self.input.role_name)}]}},
                                    {"userIdentity": {"sessionContext": {"sessionIssuer": {"userName": [self.input.role_name]}}}}
                                ]
                            }
                        },
                        "Targets": [{
                            "Arn": self.bus_arn(),
                            "Id": "break-glass-account-bus",
                            "RoleArn": {"Fn::GetAtt": ["ForwardRole", "Arn"]}
                        }]
                    }
                }
            },
            "Outputs": {
                "BreakGlassRoleArn": {"Value": {"Fn::GetAtt": ["BreakGlassRole", "Arn"]}}
            }
        })
    }

    fn readme(&self, format: Format) -> String {
        let i = self.input;
        let mut s = format!(
            "# breakglass guardrails of profile `{}`\n\n\
Written by `breakglass guardrails {}` (breakglass {}) for the break-glass users\n{}\nof account {}. Nothing here is a secret. Deploy in this order:\n\n",
            i.profile,
            i.profile,
            env!("CARGO_PKG_VERSION"),
            i.users.iter().map(|u| format!("- `{u}`")).collect::<Vec<_>>().join("\n"),
            self.account
        );
        if format != Format::Json {
            s += &format!(
                "1. **`breakglass-account.yaml`** in the break-glass account {acct}, region **{EVENTS_REGION}** \
(IAM and console sign-in events reach EventBridge there). Give it the organization's id (`OrganizationId`, \
`o-…`) and, if you like, an `AlertEmail`. It makes the alert topic `{topic}` and its policy, the bus \
`{bus}` that member accounts forward to, the rules for the users' GetSessionToken, AssumeRole and \
ConsoleLogin and for changes to the users, and the users' own policy (attached to them).\n\
   `aws cloudformation deploy --region {EVENTS_REGION} --stack-name breakglass-alerts --template-file breakglass-account.yaml --capabilities CAPABILITY_NAMED_IAM --parameter-overrides OrganizationId=o-…`\n\
2. **`member-accounts.yaml`** as a StackSet from the management account (or its delegated \
administrator) to every member account, in {EVENTS_REGION} and in each region the break-glass role is used from \
(AssumeRole events are recorded in the region of the STS endpoint called). It makes the role `{role}` \
(trusting only the users above, with MFA; `sts:SetSourceIdentity`; at most {max} s) and the rule `{rule}` \
forwarding its use to the bus. `breakglass drill` then finds both (`drill_rule = \"{rule}\"`).\n",
                acct = self.account,
                topic = i.topic_name,
                bus = self.bus_name(),
                role = i.role_name,
                max = i.max_session_secs,
                rule = i.rule_name,
            );
        }
        if format != Format::Cloudformation {
            s += &format!(
                "{n}. **The SCPs**, from the management account:\n\
   - `policies/scp-breakglass-account.json` on the break-glass account (or its OU): the users may call only \
what breakglass needs; nobody but the users, `{op}` (the platform team) and `{dep}` acts there; only those \
two roles change the alerting.\n\
   - `policies/scp-member-accounts.json` on the member accounts' OUs: only `{dep}` changes the role `{role}` \
and the rule `{rule}`.\n\
   Attach them after the stacks exist: the deployment role is the exception they make.\n\n\
The same documents as plain JSON, for review or for your own infrastructure as code: \
`policies/breakglass-users.json` (the users' policy), `policies/breakglass-role-trust.json` (the role's \
trust), `policies/alert-topic.json` (the topic's policy).\n",
                n = if format == Format::Json { 1 } else { 3 },
                op = i.operator_role,
                dep = i.deployer_role,
                role = i.role_name,
                rule = i.rule_name,
            );
        }
        s += "\nCheck after deploying: `breakglass drill PROFILE` (the role and the rule in every account), and an \
activation on a quiet day, which the topic's subscribers must hear.\n";
        s
    }
}

impl Input {
    fn profile_slug(&self) -> String {
        self.profile
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect()
    }
}

/// The files of the AWS side for `input`.
pub fn render(input: &Input, format: Format) -> Result<Vec<File>, Error> {
    let first = input
        .users
        .first()
        .ok_or_else(|| Error::NotAUser { arn: String::new() })?;
    let head = user(first)?;
    let mut names = Vec::new();
    for arn in &input.users {
        let u = user(arn)?;
        if u.account != head.account || u.partition != head.partition {
            return Err(Error::SeveralAccounts {
                first: first.clone(),
                other: arn.clone(),
            });
        }
        names.push(u.name);
    }
    check_name("the role (drill_role)", &input.role_name, 64, "+=,.@_-")?;
    check_name("the deployment role", &input.deployer_role, 64, "+=,.@_-*")?;
    check_name("the operator role", &input.operator_role, 64, "+=,.@_-*")?;
    check_name("the alert topic", &input.topic_name, 200, "_-")?;
    check_name("the alert rule (drill_rule)", &input.rule_name, 64, "_-.")?;
    if !(3600..=43_200).contains(&input.max_session_secs) {
        return Err(Error::MaxSession {
            secs: input.max_session_secs,
        });
    }
    let made = Made {
        input,
        partition: head.partition,
        account: head.account,
        names,
    };
    let json_text = |v: Value| {
        let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
        s.push('\n');
        s
    };
    let mut out = vec![File {
        path: "README.md",
        text: made.readme(format),
    }];
    if format != Format::Json {
        out.push(File {
            path: "breakglass-account.yaml",
            text: to_yaml(&made.account_template()),
        });
        out.push(File {
            path: "member-accounts.yaml",
            text: to_yaml(&made.member_template()),
        });
    }
    // The SCPs have no CloudFormation of their own here: they go on from the management
    // account, whatever the format.
    out.push(File {
        path: "policies/scp-breakglass-account.json",
        text: json_text(made.scp_account()),
    });
    out.push(File {
        path: "policies/scp-member-accounts.json",
        text: json_text(made.scp_members()),
    });
    if format != Format::Cloudformation {
        out.push(File {
            path: "policies/breakglass-users.json",
            text: json_text(made.user_policy()),
        });
        out.push(File {
            path: "policies/breakglass-role-trust.json",
            text: json_text(made.trust_policy()),
        });
        out.push(File {
            path: "policies/alert-topic.json",
            text: json_text(made.topic_policy(Value::String(made.topic_arn()))),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> Input {
        Input {
            profile: "prod".into(),
            users: vec![
                "arn:aws:iam::111122223333:user/breakglass".into(),
                "arn:aws:iam::111122223333:user/ops/breakglass-2".into(),
            ],
            role_name: "BreakGlass".into(),
            topic_name: "breakglass-alerts".into(),
            rule_name: "breakglass-role-use".into(),
            max_session_secs: 3600,
            deployer_role: "stacksets-exec-*".into(),
            operator_role: "PlatformOperator".into(),
        }
    }

    fn file<'a>(files: &'a [File], path: &str) -> &'a str {
        &files.iter().find(|f| f.path == path).unwrap().text
    }

    #[test]
    fn the_users_policy_is_what_breakglass_calls_with_mfa() {
        let files = render(&input(), Format::All).unwrap();
        let p: Value =
            serde_json::from_str(file(&files, "policies/breakglass-users.json")).unwrap();
        for s in p["Statement"].as_array().unwrap() {
            assert_eq!(s["Effect"], "Allow");
            assert_eq!(
                s["Condition"]["Bool"]["aws:MultiFactorAuthPresent"], "true",
                "{s}"
            );
            assert!(!s["Action"].to_string().contains('*'), "{s}");
        }
        let text = p.to_string();
        assert!(text.contains("arn:aws:sns:us-east-1:111122223333:breakglass-alerts"));
        assert!(text.contains("arn:aws:iam::*:role/BreakGlass"));
        assert!(text.contains("arn:aws:iam::111122223333:user/ops/breakglass-2"));
    }

    #[test]
    fn the_role_trusts_the_users_only_with_mfa_and_the_templates_are_yaml() {
        let files = render(&input(), Format::All).unwrap();
        let t: Value =
            serde_json::from_str(file(&files, "policies/breakglass-role-trust.json")).unwrap();
        let s = &t["Statement"][0];
        assert_eq!(s["Principal"]["AWS"], json!(input().users));
        assert_eq!(
            s["Action"],
            json!(["sts:AssumeRole", "sts:SetSourceIdentity"])
        );
        let member = file(&files, "member-accounts.yaml");
        assert!(member.contains("RoleName: \"BreakGlass\""), "{member}");
        assert!(member.contains("MaxSessionDuration: 3600"), "{member}");
        assert!(member.contains("Name: \"breakglass-role-use\""), "{member}");
        let account = file(&files, "breakglass-account.yaml");
        assert!(account.contains("\"GetSessionToken\""), "{account}");
        assert!(account.contains("\"ConsoleLogin\""), "{account}");
        assert!(account.contains("userName:\n"), "{account}");
        assert!(file(&files, "README.md").contains("us-east-1"));
    }

    #[test]
    fn formats_choose_the_files() {
        let paths = |f| -> Vec<&str> {
            render(&input(), f)
                .unwrap()
                .into_iter()
                .map(|f| f.path)
                .collect()
        };
        assert!(paths(Format::Cloudformation).contains(&"member-accounts.yaml"));
        assert!(!paths(Format::Cloudformation).contains(&"policies/breakglass-users.json"));
        assert!(!paths(Format::Json).contains(&"member-accounts.yaml"));
        assert!(paths(Format::Json).contains(&"policies/scp-member-accounts.json"));
        assert_eq!(paths(Format::All).len(), 8);
    }

    #[test]
    fn the_scps_fit_aws_s_size_limit() {
        let files = render(&input(), Format::All).unwrap();
        for path in [
            "policies/scp-breakglass-account.json",
            "policies/scp-member-accounts.json",
        ] {
            let v: Value = serde_json::from_str(file(&files, path)).unwrap();
            // Organizations' limit: 5,120 characters (the console and the CLI send it minified).
            let n = v.to_string().len();
            assert!(n < 5120, "{path}: {n} characters");
        }
    }

    #[test]
    fn bad_inputs_are_refused_naming_the_setting() {
        let mut i = input();
        i.users = vec!["arn:aws:iam::111122223333:role/x".into()];
        assert!(matches!(
            render(&i, Format::All),
            Err(Error::NotAUser { .. })
        ));
        let mut i = input();
        i.users.push("arn:aws:iam::444455556666:user/other".into());
        assert!(matches!(
            render(&i, Format::All),
            Err(Error::SeveralAccounts { .. })
        ));
        let mut i = input();
        i.role_name = "Break Glass".into();
        let e = render(&i, Format::All).unwrap_err().to_string();
        assert!(e.contains("drill_role"), "{e}");
        let mut i = input();
        i.max_session_secs = 900;
        assert!(matches!(
            render(&i, Format::All),
            Err(Error::MaxSession { secs: 900 })
        ));
        let mut i = input();
        i.users.clear();
        assert!(render(&i, Format::All).is_err());
    }
}
