//! IAM calls of the enrolment ceremony: a new access key, a virtual MFA device enabled with two
//! consecutive codes from the token.

use secrecy::SecretString;
use zeroize::Zeroizing;

use super::endpoint::Guard;
use super::{sdk_config, Call, Endpoint, Error, Service, Signer};

async fn client(
    endpoint: &Endpoint,
    signer: &Signer<'_>,
    call: &Call<'_>,
) -> Result<aws_sdk_iam::Client, Error> {
    let (shared, url) = sdk_config(endpoint, signer, Service::Iam).await?;
    let mut config = aws_sdk_iam::config::Builder::from(&shared);
    config.set_endpoint_url(url);
    let config = config
        .interceptor(call.tracker())
        .interceptor(Guard)
        .build();
    Ok(aws_sdk_iam::Client::from_conf(config))
}

/// CreateAccessKey for `user`: the key id and its secret.
pub async fn create_access_key(
    endpoint: &Endpoint,
    signer: &Signer<'_>,
    user: &str,
) -> Result<(String, SecretString), Error> {
    let call = Call::start("AWS IAM", "CreateAccessKey", endpoint);
    let out = client(endpoint, signer, &call)
        .await?
        .create_access_key()
        .user_name(user)
        .send()
        .await
        .map_err(|e| call.error(e))?;
    let key = out.access_key.ok_or(Error::Incomplete {
        action: "CreateAccessKey",
        what: "an access key",
    })?;
    Ok((key.access_key_id, SecretString::from(key.secret_access_key)))
}

/// CreateVirtualMFADevice: its serial (ARN) and base32 seed.
pub async fn create_virtual_mfa(
    endpoint: &Endpoint,
    signer: &Signer<'_>,
    name: &str,
) -> Result<(String, Zeroizing<String>), Error> {
    let call = Call::start("AWS IAM", "CreateVirtualMFADevice", endpoint);
    let out = client(endpoint, signer, &call)
        .await?
        .create_virtual_mfa_device()
        .virtual_mfa_device_name(name)
        .send()
        .await
        .map_err(|e| call.error(e))?;
    let dev = out.virtual_mfa_device.ok_or(Error::Incomplete {
        action: "CreateVirtualMFADevice",
        what: "a device",
    })?;
    let seed = dev.base32_string_seed.ok_or(Error::Incomplete {
        action: "CreateVirtualMFADevice",
        what: "a seed",
    })?;
    let seed =
        Zeroizing::new(
            String::from_utf8(seed.into_inner()).map_err(|_| Error::Incomplete {
                action: "CreateVirtualMFADevice",
                what: "a text seed",
            })?,
        );
    Ok((dev.serial_number, seed))
}

/// EnableMFADevice with the codes of two consecutive windows.
pub async fn enable_mfa(
    endpoint: &Endpoint,
    signer: &Signer<'_>,
    user: &str,
    serial: &str,
    code1: &str,
    code2: &str,
) -> Result<(), Error> {
    let call = Call::start("AWS IAM", "EnableMFADevice", endpoint);
    client(endpoint, signer, &call)
        .await?
        .enable_mfa_device()
        .user_name(user)
        .serial_number(serial)
        .authentication_code1(code1)
        .authentication_code2(code2)
        .send()
        .await
        .map_err(|e| call.error(e))?;
    Ok(())
}

/// Whether an access key may sign requests (IAM's `Status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum KeyStatus {
    /// It signs.
    Active,
    /// It exists but AWS refuses it; it can be made active again.
    Inactive,
}

impl KeyStatus {
    /// `"Active"`, `"Inactive"`, as IAM words them.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "Active",
            Self::Inactive => "Inactive",
        }
    }
}

/// An access key of a user, as `ListAccessKeys` describes it (no secret).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyMeta {
    /// `AKIA…`.
    pub access_key_id: String,
    /// Active or inactive.
    pub status: KeyStatus,
    /// When it was created, Unix seconds (0 when AWS did not say).
    pub created: u64,
}

/// The user name in a user ARN (`arn:aws:iam::123456789012:user/path/NAME` → `NAME`).
pub fn user_name(user_arn: &str) -> Option<&str> {
    let (_, resource) = user_arn.rsplit_once(":user/")?;
    let name = resource.rsplit('/').next()?;
    (!name.is_empty()).then_some(name)
}

/// ListAccessKeys for `user` (every page).
pub async fn list_access_keys(
    endpoint: &Endpoint,
    signer: &Signer<'_>,
    user: &str,
) -> Result<Vec<KeyMeta>, Error> {
    let call = Call::start("AWS IAM", "ListAccessKeys", endpoint);
    let client = client(endpoint, signer, &call).await?;
    let mut keys = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let out = client
            .list_access_keys()
            .user_name(user)
            .set_marker(marker.take())
            .send()
            .await
            .map_err(|e| call.error(e))?;
        for k in out.access_key_metadata {
            let status = match k.status {
                Some(aws_sdk_iam::types::StatusType::Active) => KeyStatus::Active,
                Some(aws_sdk_iam::types::StatusType::Inactive) => KeyStatus::Inactive,
                _ => {
                    return Err(Error::Incomplete {
                        action: "ListAccessKeys",
                        what: "a key's status",
                    })
                }
            };
            let access_key_id = k.access_key_id.ok_or(Error::Incomplete {
                action: "ListAccessKeys",
                what: "a key's id",
            })?;
            keys.push(KeyMeta {
                access_key_id,
                status,
                created: k
                    .create_date
                    .map_or(0, |d| u64::try_from(d.secs()).unwrap_or(0)),
            });
        }
        match (out.is_truncated, out.marker) {
            (true, Some(m)) if keys.len() < 100 => marker = Some(m),
            _ => break,
        }
    }
    Ok(keys)
}

/// UpdateAccessKey: makes `key_id` of `user` active or inactive.
pub async fn update_access_key(
    endpoint: &Endpoint,
    signer: &Signer<'_>,
    user: &str,
    key_id: &str,
    status: KeyStatus,
) -> Result<(), Error> {
    let call = Call::start("AWS IAM", "UpdateAccessKey", endpoint);
    let status = match status {
        KeyStatus::Active => aws_sdk_iam::types::StatusType::Active,
        KeyStatus::Inactive => aws_sdk_iam::types::StatusType::Inactive,
    };
    client(endpoint, signer, &call)
        .await?
        .update_access_key()
        .user_name(user)
        .access_key_id(key_id)
        .status(status)
        .send()
        .await
        .map_err(|e| call.error(e))?;
    Ok(())
}

/// DeleteAccessKey: `key_id` of `user` is gone for good.
pub async fn delete_access_key(
    endpoint: &Endpoint,
    signer: &Signer<'_>,
    user: &str,
    key_id: &str,
) -> Result<(), Error> {
    let call = Call::start("AWS IAM", "DeleteAccessKey", endpoint);
    client(endpoint, signer, &call)
        .await?
        .delete_access_key()
        .user_name(user)
        .access_key_id(key_id)
        .send()
        .await
        .map_err(|e| call.error(e))?;
    Ok(())
}

/// The user a key belongs to, and when it was last used (Unix seconds) and for which
/// service (`None`: never).
pub async fn access_key_last_used(
    endpoint: &Endpoint,
    signer: &Signer<'_>,
    key_id: &str,
) -> Result<(String, Option<(u64, String)>), Error> {
    let call = Call::start("AWS IAM", "GetAccessKeyLastUsed", endpoint);
    let out = client(endpoint, signer, &call)
        .await?
        .get_access_key_last_used()
        .access_key_id(key_id)
        .send()
        .await
        .map_err(|e| call.error(e))?;
    let user = out.user_name.ok_or(Error::Incomplete {
        action: "GetAccessKeyLastUsed",
        what: "the key's user",
    })?;
    let used = out.access_key_last_used.and_then(|u| {
        let when = u.last_used_date?.secs();
        Some((u64::try_from(when).ok()?, u.service_name))
    });
    Ok((user, used))
}

/// ListUsers (every page): the names of the account's IAM users.
pub async fn list_users(endpoint: &Endpoint, signer: &Signer<'_>) -> Result<Vec<String>, Error> {
    let call = Call::start("AWS IAM", "ListUsers", endpoint);
    let client = client(endpoint, signer, &call).await?;
    let mut names = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let out = client
            .list_users()
            .set_marker(marker.take())
            .send()
            .await
            .map_err(|e| call.error(e))?;
        names.extend(out.users.into_iter().map(|u| u.user_name));
        match (out.is_truncated, out.marker) {
            // IAM allows 5,000 users an account: a server that pages forever stops there.
            (true, Some(m)) if names.len() < 5_000 => marker = Some(m),
            _ => break,
        }
    }
    Ok(names)
}

/// A role as `GetRole` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleFacts {
    /// Its ARN.
    pub arn: String,
    /// The trust policy, decoded JSON.
    pub trust_policy: String,
    /// `MaxSessionDuration`, seconds.
    pub max_session_secs: u64,
}

/// GetRole `name` (in the account of the signing credentials).
pub async fn get_role(
    endpoint: &Endpoint,
    signer: &Signer<'_>,
    name: &str,
) -> Result<RoleFacts, Error> {
    let call = Call::start("AWS IAM", "GetRole", endpoint);
    let out = client(endpoint, signer, &call)
        .await?
        .get_role()
        .role_name(name)
        .send()
        .await
        .map_err(|e| call.error(e))?;
    let role = out.role.ok_or(Error::Incomplete {
        action: "GetRole",
        what: "the role",
    })?;
    let encoded = role.assume_role_policy_document.ok_or(Error::Incomplete {
        action: "GetRole",
        what: "the trust policy",
    })?;
    // IAM answers the document URL-encoded.
    let trust_policy = percent_encoding::percent_decode_str(&encoded)
        .decode_utf8()
        .map_err(|_| Error::Incomplete {
            action: "GetRole",
            what: "a UTF-8 trust policy",
        })?
        .into_owned();
    Ok(RoleFacts {
        arn: role.arn,
        trust_policy,
        max_session_secs: role
            .max_session_duration
            .map_or(3600, |d| u64::try_from(d).unwrap_or(0)),
    })
}

/// ListAttachedRolePolicies `name`: the policies' ARNs.
pub async fn list_attached_role_policies(
    endpoint: &Endpoint,
    signer: &Signer<'_>,
    name: &str,
) -> Result<Vec<String>, Error> {
    let call = Call::start("AWS IAM", "ListAttachedRolePolicies", endpoint);
    let out = client(endpoint, signer, &call)
        .await?
        .list_attached_role_policies()
        .role_name(name)
        .send()
        .await
        .map_err(|e| call.error(e))?;
    Ok(out
        .attached_policies
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| p.policy_arn)
        .collect())
}

/// What IAM says of a user for the drill: its MFA devices, its console password, its policies.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct UserFacts {
    /// The serials (ARNs) of its MFA devices.
    pub mfa_devices: Vec<String>,
    /// Whether it has a console password (a login profile).
    pub console_password: bool,
    /// Its attached managed policies' ARNs.
    pub attached_policies: Vec<String>,
    /// Its inline policies' names.
    pub inline_policies: Vec<String>,
}

/// ListMFADevices, GetLoginProfile, ListAttachedUserPolicies and ListUserPolicies for `user`.
pub async fn user_facts(
    endpoint: &Endpoint,
    signer: &Signer<'_>,
    user: &str,
) -> Result<UserFacts, Error> {
    let call = Call::start("AWS IAM", "ListMFADevices", endpoint);
    let c = client(endpoint, signer, &call).await?;
    let devices = c
        .list_mfa_devices()
        .user_name(user)
        .send()
        .await
        .map_err(|e| call.error(e))?;
    let call = Call::start("AWS IAM", "GetLoginProfile", endpoint);
    let c = client(endpoint, signer, &call).await?;
    let console_password = match c.get_login_profile().user_name(user).send().await {
        Ok(_) => true,
        Err(e) => match call.error(e) {
            Error::Denied { code, .. } if code == "NoSuchEntity" => false,
            other => return Err(other),
        },
    };
    let call = Call::start("AWS IAM", "ListAttachedUserPolicies", endpoint);
    let c = client(endpoint, signer, &call).await?;
    let attached = c
        .list_attached_user_policies()
        .user_name(user)
        .send()
        .await
        .map_err(|e| call.error(e))?;
    let call = Call::start("AWS IAM", "ListUserPolicies", endpoint);
    let c = client(endpoint, signer, &call).await?;
    let inline = c
        .list_user_policies()
        .user_name(user)
        .send()
        .await
        .map_err(|e| call.error(e))?;
    Ok(UserFacts {
        mfa_devices: devices
            .mfa_devices
            .into_iter()
            .map(|d| d.serial_number)
            .collect(),
        console_password,
        attached_policies: attached
            .attached_policies
            .unwrap_or_default()
            .into_iter()
            .filter_map(|p| p.policy_arn)
            .collect(),
        inline_policies: inline.policy_names,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_come_from_arns_with_or_without_a_path() {
        assert_eq!(
            user_name("arn:aws:iam::123456789012:user/breakglass"),
            Some("breakglass")
        );
        assert_eq!(
            user_name("arn:aws:iam::123456789012:user/emergency/breakglass"),
            Some("breakglass")
        );
        assert_eq!(user_name("arn:aws:iam::123456789012:role/x"), None);
        assert_eq!(user_name("arn:aws:iam::123456789012:user/"), None);
    }
}
