//! STS: GetSessionToken with MFA, GetCallerIdentity.

use secrecy::SecretString;

use super::{classify, sdk_config, Endpoint, Error, Signer};

/// Temporary credentials. The secret parts are `SecretString`s; no `Debug`.
pub struct Session {
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    pub session_token: SecretString,
    /// Unix seconds.
    pub expiration: u64,
}

/// Who a set of credentials is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub account: String,
    pub arn: String,
    pub user_id: String,
}

async fn client(endpoint: &Endpoint, signer: &Signer<'_>) -> aws_sdk_sts::Client {
    aws_sdk_sts::Client::new(&sdk_config(endpoint, signer).await)
}

/// GetSessionToken with the MFA device's serial and a code.
pub async fn get_session_token(
    endpoint: &Endpoint,
    signer: &Signer<'_>,
    serial: &str,
    code: &str,
    duration_secs: u64,
) -> Result<Session, Error> {
    let out = client(endpoint, signer)
        .await
        .get_session_token()
        .serial_number(serial)
        .token_code(code)
        .duration_seconds(i32::try_from(duration_secs).unwrap_or(i32::MAX))
        .send()
        .await
        .map_err(|e| classify("GetSessionToken", endpoint, e))?;
    let c = out.credentials.ok_or(Error::Incomplete {
        action: "GetSessionToken",
        what: "credentials",
    })?;
    Ok(Session {
        access_key_id: c.access_key_id,
        secret_access_key: SecretString::from(c.secret_access_key),
        session_token: SecretString::from(c.session_token),
        expiration: u64::try_from(c.expiration.secs()).unwrap_or(0),
    })
}

/// GetCallerIdentity.
pub async fn get_caller_identity(
    endpoint: &Endpoint,
    signer: &Signer<'_>,
) -> Result<Identity, Error> {
    let out = client(endpoint, signer)
        .await
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| classify("GetCallerIdentity", endpoint, e))?;
    Ok(Identity {
        account: out.account.unwrap_or_default(),
        arn: out.arn.unwrap_or_default(),
        user_id: out.user_id.unwrap_or_default(),
    })
}
