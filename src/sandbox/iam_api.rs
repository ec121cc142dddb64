//! The emulator's IAM actions: access keys (create, update, delete, list), virtual MFA devices
//! (create, enable with two consecutive codes, deactivate) and GetUser.
//!
//! Authorization is simplified: the admin user may act on any user, a user on itself only,
//! role sessions on no one; GetSessionToken sessions without MFA are refused outright, as AWS
//! refuses them for every IAM call.

use data_encoding::BASE64;
use secrecy::ExposeSecret;
use zeroize::Zeroizing;

use super::model::{
    iso8601, AccessKey, Account, KeyStatus, ACCOUNT_ID, ADMIN_USER, MAX_KEYS_PER_USER,
    MAX_MFA_DEVICES_PER_USER, TOTP_PERIOD_SECS,
};
use super::sts::Cx;
use super::wire::{check_name, Fault, Params, Xml};

/// GetSessionToken sessions may call IAM only when they were created with MFA.
fn check_credentials(cx: &Cx<'_>) -> Result<(), Fault> {
    if cx.caller.session && cx.caller.user().is_some() && !cx.caller.mfa {
        return Err(Fault::InvalidClientTokenId);
    }
    Ok(())
}

/// The user an action is about (`UserName`, else the caller), once the caller may act on it
/// and it exists.
fn target_user(cx: &Cx<'_>, p: &Params, action: &str, required: bool) -> Result<String, Fault> {
    check_credentials(cx)?;
    let me = cx.caller.user();
    let target = match (p.get("UserName"), me) {
        (Some(name), _) => {
            check_name("userName", name, (1, 64), "")?;
            name
        }
        (None, _) if required => return Err(Fault::invalid("userName", None, "not be null")),
        (None, Some(me)) => me,
        (None, None) => {
            return Err(Fault::Validation(
                "Must specify userName when calling with non-User credentials".into(),
            ))
        }
    };
    if me != Some(ADMIN_USER) && me != Some(target) {
        let resource = Account::user_arn(target);
        return Err(Fault::not_authorized(
            &cx.caller.arn(),
            &format!("iam:{action}"),
            &resource,
        ));
    }
    if !cx.account.users.contains_key(target) {
        return Err(Fault::NoSuchEntity(format!(
            "The user with name {target} cannot be found."
        )));
    }
    Ok(target.to_owned())
}

fn owned_key<'a>(
    account: &'a mut Account,
    user: &str,
    p: &Params,
) -> Result<&'a mut AccessKey, Fault> {
    let id = p.required("AccessKeyId", "accessKeyId")?;
    account
        .keys
        .get_mut(id)
        .filter(|k| k.user == user)
        .ok_or_else(|| Fault::NoSuchEntity(format!("The Access Key with id {id} cannot be found.")))
}

pub fn create_access_key(cx: &mut Cx<'_>, p: &Params) -> Result<Option<Xml>, Fault> {
    let user = target_user(cx, p, "CreateAccessKey", false)?;
    if cx.account.keys_of(&user).count() >= MAX_KEYS_PER_USER {
        return Err(Fault::LimitExceeded(format!(
            "Cannot exceed quota for AccessKeysPerUser: {MAX_KEYS_PER_USER}"
        )));
    }
    let key = cx.account.create_key(&user, cx.now);
    let mut xml = Xml::new();
    xml.open("AccessKey")
        .el("UserName", &key.user)
        .el("AccessKeyId", &key.id)
        .el("Status", key.status.as_str())
        .el("SecretAccessKey", key.secret.expose_secret())
        .el("CreateDate", &iso8601(key.created))
        .close("AccessKey");
    Ok(Some(xml))
}

pub fn update_access_key(cx: &mut Cx<'_>, p: &Params) -> Result<Option<Xml>, Fault> {
    let user = target_user(cx, p, "UpdateAccessKey", false)?;
    let status = match p.required("Status", "status")? {
        "Active" => KeyStatus::Active,
        "Inactive" => KeyStatus::Inactive,
        other => {
            let c = "satisfy enum value set: [Active, Inactive]";
            return Err(Fault::invalid("status", Some(other), c));
        }
    };
    owned_key(cx.account, &user, p)?.status = status;
    Ok(None)
}

pub fn delete_access_key(cx: &mut Cx<'_>, p: &Params) -> Result<Option<Xml>, Fault> {
    let user = target_user(cx, p, "DeleteAccessKey", false)?;
    let id = owned_key(cx.account, &user, p)?.id.clone();
    cx.account.keys.remove(&id);
    Ok(None)
}

pub fn list_access_keys(cx: &mut Cx<'_>, p: &Params) -> Result<Option<Xml>, Fault> {
    let user = target_user(cx, p, "ListAccessKeys", false)?;
    let mut xml = Xml::new();
    xml.el("UserName", &user).open("AccessKeyMetadata");
    for key in cx.account.keys_of(&user) {
        xml.open("member")
            .el("UserName", &key.user)
            .el("AccessKeyId", &key.id)
            .el("Status", key.status.as_str())
            .el("CreateDate", &iso8601(key.created))
            .close("member");
    }
    xml.close("AccessKeyMetadata").el("IsTruncated", "false");
    Ok(Some(xml))
}

pub fn get_user(cx: &mut Cx<'_>, p: &Params) -> Result<Option<Xml>, Fault> {
    let name = target_user(cx, p, "GetUser", false)?;
    let user = &cx.account.users[&name];
    let mut xml = Xml::new();
    xml.open("User")
        .el("Path", "/")
        .el("UserName", &user.name)
        .el("UserId", &user.id)
        .el("Arn", &user.arn)
        .el("CreateDate", &iso8601(user.created))
        .close("User");
    Ok(Some(xml))
}

fn check_path(path: &str) -> Result<(), Fault> {
    let printable = path.bytes().all(|b| (0x21..0x7f).contains(&b));
    if path.len() > 512 || !path.starts_with('/') || !path.ends_with('/') || !printable {
        let c = "satisfy regular expression pattern: (\\u002F)|(\\u002F[\\u0021-\\u007F]+\\u002F)";
        return Err(Fault::invalid("path", Some(path), c));
    }
    Ok(())
}

pub fn create_virtual_mfa_device(cx: &mut Cx<'_>, p: &Params) -> Result<Option<Xml>, Fault> {
    check_credentials(cx)?;
    let name = p.required("VirtualMFADeviceName", "virtualMFADeviceName")?;
    check_name("virtualMFADeviceName", name, (1, 226), "")?;
    let path = p.get("Path").unwrap_or("/");
    check_path(path)?;
    let serial = format!("arn:aws:iam::{ACCOUNT_ID}:mfa{path}{name}");
    if cx.caller.user().is_none() {
        let action = "iam:CreateVirtualMFADevice";
        return Err(Fault::not_authorized(&cx.caller.arn(), action, &serial));
    }
    if cx.account.devices.contains_key(&serial) {
        return Err(Fault::EntityAlreadyExists(
            "MFADevice entity at the same path and name already exists.".into(),
        ));
    }
    let seed = cx.account.create_device(&serial);
    // On the wire the seed is a blob holding the base32 text, hence base64 of base32.
    let wire_seed = Zeroizing::new(BASE64.encode(seed.as_bytes()));
    let mut xml = Xml::new();
    xml.open("VirtualMFADevice")
        .el("SerialNumber", &serial)
        .el("Base32StringSeed", &wire_seed)
        .close("VirtualMFADevice");
    Ok(Some(xml))
}

fn authentication_code<'p>(p: &'p Params, name: &str, field: &str) -> Result<&'p str, Fault> {
    let code = p.required(name, field)?;
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        let c = "satisfy regular expression pattern: [\\d]{6}";
        return Err(Fault::invalid(field, Some(code), c));
    }
    Ok(code)
}

pub fn enable_mfa_device(cx: &mut Cx<'_>, p: &Params) -> Result<Option<Xml>, Fault> {
    let user = target_user(cx, p, "EnableMFADevice", true)?;
    let serial = p.required("SerialNumber", "serialNumber")?;
    check_name("serialNumber", serial, (9, 256), "/:")?;
    let code1 = authentication_code(p, "AuthenticationCode1", "authenticationCode1")?;
    let code2 = authentication_code(p, "AuthenticationCode2", "authenticationCode2")?;
    if cx.account.devices_of(&user).count() >= MAX_MFA_DEVICES_PER_USER {
        return Err(Fault::LimitExceeded(format!(
            "Cannot exceed quota for MFADevicesPerUser: {MAX_MFA_DEVICES_PER_USER}"
        )));
    }
    let device = cx.account.devices.get_mut(serial).ok_or_else(|| {
        Fault::NoSuchEntity(format!(
            "VirtualMFADevice with serial number {serial} doesn't exist."
        ))
    })?;
    if device.user.is_some() {
        return Err(Fault::EntityAlreadyExists(
            "MFA Device is already in use.".into(),
        ));
    }
    let now_step = u64::try_from(cx.now).unwrap_or(0) / u64::from(TOTP_PERIOD_SECS);
    let first = (now_step.saturating_sub(2)..=now_step)
        .filter(|&s| device.code_matches(code1, s) && device.code_matches(code2, s + 1))
        .filter(|&s| device.last_step.is_none_or(|last| s > last))
        .max()
        .ok_or(Fault::InvalidAuthenticationCode)?;
    device.user = Some(user);
    device.last_step = Some(first + 1);
    Ok(None)
}

pub fn deactivate_mfa_device(cx: &mut Cx<'_>, p: &Params) -> Result<Option<Xml>, Fault> {
    let user = target_user(cx, p, "DeactivateMFADevice", false)?;
    let serial = p.required("SerialNumber", "serialNumber")?;
    let device = cx
        .account
        .devices
        .get_mut(serial)
        .filter(|d| d.user.as_deref() == Some(user.as_str()))
        .ok_or_else(|| {
            Fault::NoSuchEntity(format!(
                "MFA Device with serial number {serial} does not exist."
            ))
        })?;
    device.user = None;
    Ok(None)
}

pub fn get_access_key_last_used(cx: &mut Cx<'_>, p: &Params) -> Result<Option<Xml>, Fault> {
    check_credentials(cx)?;
    let id = p.required("AccessKeyId", "accessKeyId")?;
    let me = cx.caller.user();
    // AWS answers for the caller's own keys, or for any key when the caller may read IAM.
    let key = cx
        .account
        .keys
        .get(id)
        .filter(|k| me == Some(ADMIN_USER) || me == Some(k.user.as_str()))
        .ok_or_else(|| {
            Fault::not_authorized(
                &cx.caller.arn(),
                "iam:GetAccessKeyLastUsed",
                &format!("arn:aws:iam::{ACCOUNT_ID}:user/*"),
            )
        })?;
    let mut xml = Xml::new();
    xml.el("UserName", &key.user).open("AccessKeyLastUsed");
    match key.last_used {
        Some((when, service)) => {
            xml.el("LastUsedDate", &iso8601(when))
                .el("ServiceName", service)
                .el("Region", super::model::REGION);
        }
        None => {
            xml.el("ServiceName", "N/A").el("Region", "N/A");
        }
    }
    xml.close("AccessKeyLastUsed");
    Ok(Some(xml))
}
