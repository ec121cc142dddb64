//! AWS calls: STS (GetSessionToken, AssumeRole, GetCallerIdentity) and IAM (enrolment), with
//! errors sorted into what an operator can act on; and a reader of the AWS shared config file.

pub mod config_file;
pub mod console;
pub mod iam;
pub mod sts;

use aws_credential_types::Credentials;
use secrecy::{ExposeSecret, SecretString};

/// Where and how to call AWS.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The region (`us-east-1`…); also picks the partition's endpoints.
    pub region: String,
    /// Explicit endpoint (profile `sts_endpoint`, the sandbox); else the SDK's own resolution,
    /// which honours `AWS_ENDPOINT_URL_STS` / `AWS_ENDPOINT_URL`.
    pub url: Option<String>,
}

impl Endpoint {
    /// The profile's region and `sts_endpoint`.
    pub fn of(profile: &crate::config::Profile) -> Self {
        Self {
            region: profile.region.clone(),
            url: profile.sts_endpoint.clone(),
        }
    }
}

/// Long-term or temporary credentials to sign with.
pub struct Signer<'a> {
    /// The access key id (`AKIA…` long-term, `ASIA…` temporary).
    pub access_key_id: &'a str,
    /// Its secret access key.
    pub secret_access_key: &'a SecretString,
    /// The session token, for temporary credentials.
    pub session_token: Option<&'a SecretString>,
}

impl Signer<'_> {
    fn credentials(&self) -> Credentials {
        Credentials::new(
            self.access_key_id,
            self.secret_access_key.expose_secret(),
            self.session_token.map(|t| t.expose_secret().to_owned()),
            None,
            "breakglass",
        )
    }
}

/// Loads the shared SDK configuration for a call (region, endpoint, static credentials).
pub(crate) async fn sdk_config(endpoint: &Endpoint, signer: &Signer<'_>) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(endpoint.region.clone()))
        .credentials_provider(signer.credentials());
    if let Some(url) = &endpoint.url {
        loader = loader.endpoint_url(url.clone());
    }
    loader.load().await
}

/// AWS failures, sorted into what the operator can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `AccessDenied` naming MultiFactorAuthentication: the MFA code was wrong, already used, or
    /// for another device.
    #[error("AWS refused the MFA code: {message}")]
    BadCode {
        /// AWS's message.
        message: String,
    },
    /// `InvalidClientTokenId`, `InvalidAccessKeyId`, or a `SignatureDoesNotMatch` that is not about
    /// time: the access key is unknown, inactive or its secret is wrong.
    #[error("AWS does not accept the access key: {message}")]
    BadKey {
        /// AWS's message.
        message: String,
    },
    /// `ExpiredToken`: the temporary credentials signing the call have expired.
    #[error("the credentials have expired: {message}")]
    Expired {
        /// AWS's message.
        message: String,
    },
    /// `RequestExpired`, or a `SignatureDoesNotMatch` that says expired: the request's time is too
    /// far from AWS's.
    #[error("this machine's clock is wrong (AWS: {message})")]
    ClockSkew {
        /// AWS's message.
        message: String,
    },
    /// AssumeRole refused: the role does not exist, its trust policy does not admit the caller,
    /// or it requires MFA and the session has none.
    #[error("AWS refused to let this session assume {role_arn}: {message}")]
    RoleDenied {
        /// The role asked for.
        role_arn: String,
        /// AWS's message.
        message: String,
    },
    /// Any other error code AWS answered.
    #[error("AWS denied {action}: {code}: {message}")]
    Denied {
        /// The call (`"GetSessionToken"`, `"AssumeRole"`…).
        action: &'static str,
        /// AWS's error code.
        code: String,
        /// AWS's message.
        message: String,
    },
    /// No answer from AWS: network, DNS, TLS, timeout.
    #[error("cannot reach AWS ({action}) at {endpoint}: {detail}")]
    Unreachable {
        /// The call.
        action: &'static str,
        /// The endpoint URL, or the region's default endpoint.
        endpoint: String,
        /// The SDK's error chain.
        detail: String,
    },
    /// AWS answered without a field the call needs.
    #[error("AWS answered {action} without {what}")]
    Incomplete {
        /// The call.
        action: &'static str,
        /// What was missing (`"credentials"`, `"the assumed role's ARN"`).
        what: &'static str,
    },
}

/// Sorts an SDK failure.
pub(crate) fn classify<E, R>(
    action: &'static str,
    endpoint: &Endpoint,
    err: aws_sdk_sts::error::SdkError<E, R>,
) -> Error
where
    E: aws_sdk_sts::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    use aws_sdk_sts::error::SdkError;
    let SdkError::ServiceError(se) = &err else {
        return Error::Unreachable {
            action,
            endpoint: endpoint
                .url
                .clone()
                .unwrap_or_else(|| format!("the {} endpoint", endpoint.region)),
            detail: aws_smithy_types::error::display::DisplayErrorContext(&err).to_string(),
        };
    };
    let code = se.err().code().unwrap_or("Unknown").to_owned();
    let message = se.err().message().unwrap_or("no message").to_owned();
    match code.as_str() {
        "AccessDenied" if message.contains("MultiFactorAuthentication") => {
            Error::BadCode { message }
        }
        "InvalidClientTokenId" | "InvalidAccessKeyId" => Error::BadKey { message },
        "SignatureDoesNotMatch" if message.to_lowercase().contains("expired") => {
            Error::ClockSkew { message }
        }
        "RequestExpired" => Error::ClockSkew { message },
        "SignatureDoesNotMatch" => Error::BadKey { message },
        // `ExpiredTokenException` is how the STS model names the same code in some operations.
        "ExpiredToken" | "ExpiredTokenException" => Error::Expired { message },
        _ => Error::Denied {
            action,
            code,
            message,
        },
    }
}
