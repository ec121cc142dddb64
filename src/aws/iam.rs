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
