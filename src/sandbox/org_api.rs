//! The emulator's read-only calls of the drill: IAM `GetRole`, `ListAttachedRolePolicies`,
//! `ListMFADevices`, `GetLoginProfile`, `ListUserPolicies`, `ListAttachedUserPolicies` (Query
//! protocol, like the rest of IAM), and AWS Organizations `ListAccounts`,
//! `ListOrganizationalUnitsForParent` and `ListAccountsForParent` (the JSON protocol:
//! `X-Amz-Target`, `application/x-amz-json-1.1`).
//!
//! Role sessions act in their role's account: `GetRole` by a session of a member account's
//! role reads that account's roles.

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::{json, Value};

use super::auth::Caller;
use super::model::{iso8601, Account, OrgAccount, OrgUnit, ACCOUNT_ID};
use super::sts::Cx;
use super::wire::{check_name, Fault, Params, Xml};

/// `ListAccounts` pages hold at most this many accounts (AWS's maximum `MaxResults`).
pub const MAX_RESULTS: usize = 20;

/// The role `RoleName` names in the caller's account.
fn role_arn(cx: &Cx<'_>, p: &Params) -> Result<String, Fault> {
    let name = p.required("RoleName", "roleName")?;
    check_name("roleName", name, (1, 64), "")?;
    let arn = format!("arn:aws:iam::{}:role/{name}", cx.caller.account());
    if !cx.account.roles.contains_key(&arn) {
        return Err(Fault::NoSuchEntity(format!(
            "The role with name {name} cannot be found."
        )));
    }
    Ok(arn)
}

fn check_session(caller: &Caller) -> Result<(), Fault> {
    if caller.session && caller.user().is_some() && !caller.mfa {
        return Err(Fault::InvalidClientTokenId);
    }
    Ok(())
}

pub fn get_role(cx: &mut Cx<'_>, p: &Params) -> Result<Option<Xml>, Fault> {
    check_session(cx.caller)?;
    let arn = role_arn(cx, p)?;
    let role = &cx.account.roles[&arn];
    let name = arn.rsplit('/').next().unwrap_or_default();
    // IAM answers the trust policy URL-encoded.
    let document = utf8_percent_encode(&role.trust_policy(), NON_ALPHANUMERIC).to_string();
    let mut xml = Xml::new();
    xml.open("Role")
        .el("Path", "/")
        .el("RoleName", name)
        .el("RoleId", &role.id)
        .el("Arn", &arn)
        .el("CreateDate", &iso8601(role.created))
        .el("AssumeRolePolicyDocument", &document)
        .el("MaxSessionDuration", &role.max_session_secs.to_string())
        .close("Role");
    Ok(Some(xml))
}

fn policies(xml: &mut Xml, arns: &[String]) {
    xml.open("AttachedPolicies");
    for arn in arns {
        xml.open("member")
            .el("PolicyName", arn.rsplit('/').next().unwrap_or(arn))
            .el("PolicyArn", arn)
            .close("member");
    }
    xml.close("AttachedPolicies").el("IsTruncated", "false");
}

pub fn list_attached_role_policies(cx: &mut Cx<'_>, p: &Params) -> Result<Option<Xml>, Fault> {
    check_session(cx.caller)?;
    let arn = role_arn(cx, p)?;
    let mut xml = Xml::new();
    policies(&mut xml, &cx.account.roles[&arn].attached);
    Ok(Some(xml))
}

/// The user an IAM call is about: `UserName`, else the caller. A user may read itself; role
/// sessions of the emulated account may read anyone of it.
fn user(cx: &Cx<'_>, p: &Params, action: &str) -> Result<String, Fault> {
    check_session(cx.caller)?;
    let name = match (p.get("UserName"), cx.caller.user()) {
        (Some(n), _) => {
            check_name("userName", n, (1, 64), "")?;
            n.to_owned()
        }
        (None, Some(me)) => me.to_owned(),
        (None, None) => {
            return Err(Fault::Validation(
                "Must specify userName when calling with non-User credentials".into(),
            ))
        }
    };
    let me = cx.caller.user();
    let may = me == Some(super::model::ADMIN_USER)
        || me == Some(name.as_str())
        || (me.is_none() && cx.caller.account() == ACCOUNT_ID);
    if !may {
        return Err(Fault::not_authorized(
            &cx.caller.arn(),
            &format!("iam:{action}"),
            &Account::user_arn(&name),
        ));
    }
    if !cx.account.users.contains_key(&name) {
        return Err(Fault::NoSuchEntity(format!(
            "The user with name {name} cannot be found."
        )));
    }
    Ok(name)
}

pub fn list_mfa_devices(cx: &mut Cx<'_>, p: &Params) -> Result<Option<Xml>, Fault> {
    let name = user(cx, p, "ListMFADevices")?;
    let mut xml = Xml::new();
    xml.open("MFADevices");
    for (serial, _) in cx
        .account
        .devices
        .iter()
        .filter(|(_, d)| d.user.as_deref() == Some(name.as_str()))
    {
        xml.open("member")
            .el("UserName", &name)
            .el("SerialNumber", serial)
            .el("EnableDate", &iso8601(cx.now))
            .close("member");
    }
    xml.close("MFADevices").el("IsTruncated", "false");
    Ok(Some(xml))
}

pub fn get_login_profile(cx: &mut Cx<'_>, p: &Params) -> Result<Option<Xml>, Fault> {
    let name = user(cx, p, "GetLoginProfile")?;
    if !cx.account.login_profiles.contains(&name) {
        return Err(Fault::NoSuchEntity(format!(
            "Login Profile for User {name} cannot be found."
        )));
    }
    let mut xml = Xml::new();
    xml.open("LoginProfile")
        .el("UserName", &name)
        .el("CreateDate", &iso8601(cx.now))
        .el("PasswordResetRequired", "false")
        .close("LoginProfile");
    Ok(Some(xml))
}

pub fn list_attached_user_policies(cx: &mut Cx<'_>, p: &Params) -> Result<Option<Xml>, Fault> {
    let name = user(cx, p, "ListAttachedUserPolicies")?;
    let attached = cx
        .account
        .user_policies
        .get(&name)
        .cloned()
        .unwrap_or_default();
    let mut xml = Xml::new();
    policies(&mut xml, &attached);
    Ok(Some(xml))
}

pub fn list_user_policies(cx: &mut Cx<'_>, p: &Params) -> Result<Option<Xml>, Fault> {
    user(cx, p, "ListUserPolicies")?;
    let mut xml = Xml::new();
    xml.open("PolicyNames")
        .close("PolicyNames")
        .el("IsTruncated", "false");
    Ok(Some(xml))
}

/// ListUsers: the users of the caller's account (member accounts have none), never truncated.
pub fn list_users(cx: &mut Cx<'_>, _: &Params) -> Result<Option<Xml>, Fault> {
    check_session(cx.caller)?;
    let mut xml = Xml::new();
    xml.open("Users");
    if cx.caller.account() == ACCOUNT_ID {
        for u in cx.account.users.values() {
            xml.open("member")
                .el("Path", "/")
                .el("UserName", &u.name)
                .el("UserId", &u.id)
                .el("Arn", &u.arn)
                .el("CreateDate", &iso8601(u.created))
                .close("member");
        }
    }
    xml.close("Users").el("IsTruncated", "false");
    Ok(Some(xml))
}

/// An Organizations error: its `__type` and message, and the HTTP status.
pub struct JsonFault {
    pub status: u16,
    pub kind: &'static str,
    pub message: String,
}

impl JsonFault {
    /// The error body the JSON protocol carries.
    pub fn body(&self) -> String {
        json!({ "__type": self.kind, "Message": self.message }).to_string()
    }

    /// A signature or credential failure, in the JSON protocol's words.
    pub fn of(fault: &Fault) -> Self {
        let kind = match fault {
            Fault::AccessDenied(_) => "AccessDeniedException",
            Fault::Throttling => "TooManyRequestsException",
            Fault::InvalidClientTokenId => "UnrecognizedClientException",
            Fault::Validation(_) => "InvalidInputException",
            _ => fault.code(),
        };
        Self {
            status: fault.status(),
            kind,
            message: fault.to_string(),
        }
    }
}

/// EventBridge `DescribeRule`: the rule `Name` on the caller's account's default bus.
pub fn describe_rule(account: &Account, caller: &Caller, body: &[u8]) -> Result<Value, JsonFault> {
    let input: Value = serde_json::from_slice(body).map_err(|_| JsonFault {
        status: 400,
        kind: "SerializationException",
        message: "the body is not JSON".into(),
    })?;
    let Some(name) = input.get("Name").and_then(Value::as_str) else {
        return Err(JsonFault {
            status: 400,
            kind: "ValidationException",
            message: "1 validation error detected: Value null at 'name' failed to satisfy constraint: Member must not be null".into(),
        });
    };
    let key = (caller.account().to_owned(), name.to_owned());
    let Some(enabled) = account.rules.get(&key) else {
        return Err(JsonFault {
            status: 400,
            kind: "ResourceNotFoundException",
            message: format!("Rule {name} does not exist on EventBus default."),
        });
    };
    Ok(json!({
        "Name": name,
        "Arn": format!("arn:aws:events:us-east-1:{}:rule/{name}", caller.account()),
        "State": if *enabled { "ENABLED" } else { "DISABLED" },
        "EventBusName": "default",
    }))
}

/// The organization's root id (real ids are `r-` and 4 to 32 lowercase letters or digits).
pub const ROOT_ID: &str = "r-sbx0";

/// The request body of a JSON call (an empty body reads as `{}`).
fn input(body: &[u8]) -> Result<Value, JsonFault> {
    serde_json::from_slice(if body.is_empty() { b"{}" } else { body }).map_err(|_| JsonFault {
        status: 400,
        kind: "SerializationException",
        message: "the body is not JSON".into(),
    })
}

/// Whether `caller` may call Organizations' `action`: the management account, with MFA when
/// it is a session of a user, and no explicit deny.
fn gate(account: &Account, caller: &Caller, action: &str) -> Result<(), JsonFault> {
    if caller.session && caller.user().is_some() && !caller.mfa {
        return Err(JsonFault::of(&Fault::AccessDenied(
            "You don't have permissions to access this resource.".into(),
        )));
    }
    let denied = caller
        .user()
        .is_some_and(|u| account.denied.contains(&(u.to_owned(), action.to_owned())));
    if denied || caller.account() != ACCOUNT_ID {
        return Err(JsonFault {
            status: 400,
            kind: "AccessDeniedException",
            message: format!(
                "User: {} is not authorized to perform: organizations:{action}",
                caller.arn()
            ),
        });
    }
    if account.organization.is_empty() {
        return Err(JsonFault {
            status: 400,
            kind: "AWSOrganizationsNotInUseException",
            message: "Your account is not a member of an organization.".into(),
        });
    }
    Ok(())
}

/// One page of `items` as `input`'s `NextToken` (`page-OFFSET`) and `MaxResults` ask: the
/// page, and the next token when more follow.
fn page<T: Clone>(items: &[T], input: &Value) -> Result<(Vec<T>, Option<String>), JsonFault> {
    let bad_token = || JsonFault {
        status: 400,
        kind: "InvalidInputException",
        message: "You specified an invalid value for nextToken.".into(),
    };
    let start = match input.get("NextToken") {
        None | Some(Value::Null) => 0,
        Some(Value::String(t)) => t
            .strip_prefix("page-")
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|&n| n < items.len())
            .ok_or_else(bad_token)?,
        Some(_) => return Err(bad_token()),
    };
    let size = match input.get("MaxResults") {
        None | Some(Value::Null) => MAX_RESULTS,
        Some(v) => v
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| (1..=MAX_RESULTS).contains(n))
            .ok_or_else(|| JsonFault {
                status: 400,
                kind: "InvalidInputException",
                message: format!("MaxResults must be between 1 and {MAX_RESULTS}."),
            })?,
    };
    let next = (start + size < items.len()).then(|| format!("page-{}", start + size));
    Ok((items.iter().skip(start).take(size).cloned().collect(), next))
}

fn account_json(a: &OrgAccount) -> Value {
    json!({
        "Id": a.id,
        "Arn": format!("arn:aws:organizations::{ACCOUNT_ID}:account/o-sandbox/{}", a.id),
        "Email": format!("{}@example.com", a.name),
        "Name": a.name,
        "Status": a.status,
        "JoinedMethod": "CREATED",
        "JoinedTimestamp": 1_700_000_000,
    })
}

fn with_token(mut out: Value, next: Option<String>) -> Value {
    if let Some(next) = next {
        out["NextToken"] = json!(next);
    }
    out
}

/// `ListAccounts` for `caller`: the organization's accounts, [`MAX_RESULTS`] (or
/// `MaxResults`) a page, `NextToken` the offset of the next.
pub fn list_accounts(account: &Account, caller: &Caller, body: &[u8]) -> Result<Value, JsonFault> {
    let input = input(body)?;
    gate(account, caller, "ListAccounts")?;
    let (items, next) = page(&account.organization, &input)?;
    let page: Vec<Value> = items.iter().map(account_json).collect();
    Ok(with_token(json!({ "Accounts": page }), next))
}

/// What a `…ForParent` call lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Children {
    /// `ListOrganizationalUnitsForParent`.
    Units,
    /// `ListAccountsForParent`.
    Accounts,
}

/// `ListOrganizationalUnitsForParent` or `ListAccountsForParent`: what sits directly under
/// `ParentId` (the root or an OU), paged like [`list_accounts`].
pub fn list_children(
    account: &Account,
    caller: &Caller,
    body: &[u8],
    children: Children,
) -> Result<Value, JsonFault> {
    let input = input(body)?;
    gate(
        account,
        caller,
        match children {
            Children::Units => "ListOrganizationalUnitsForParent",
            Children::Accounts => "ListAccountsForParent",
        },
    )?;
    let Some(parent) = input.get("ParentId").and_then(Value::as_str) else {
        return Err(JsonFault {
            status: 400,
            kind: "InvalidInputException",
            message: "You provided a value that does not match the required pattern: ParentId"
                .into(),
        });
    };
    if parent != ROOT_ID && !account.org_units.iter().any(|u| u.id == parent) {
        return Err(JsonFault {
            status: 400,
            kind: "ParentNotFoundException",
            message: "We can't find a root or OU with the ParentId that you specified.".into(),
        });
    }
    Ok(match children {
        Children::Units => {
            let units: Vec<&OrgUnit> = account
                .org_units
                .iter()
                .filter(|u| u.parent == parent)
                .collect();
            let (items, next) = page(&units, &input)?;
            let page: Vec<Value> = items
                .iter()
                .map(|u| {
                    json!({
                        "Id": u.id,
                        "Arn": format!("arn:aws:organizations::{ACCOUNT_ID}:ou/o-sandbox/{}", u.id),
                        "Name": u.name,
                    })
                })
                .collect();
            with_token(json!({ "OrganizationalUnits": page }), next)
        }
        Children::Accounts => {
            let accounts: Vec<&OrgAccount> = account
                .organization
                .iter()
                .filter(|a| a.parent == parent)
                .collect();
            let (items, next) = page(&accounts, &input)?;
            let page: Vec<Value> = items.iter().map(|a| account_json(a)).collect();
            with_token(json!({ "Accounts": page }), next)
        }
    })
}
