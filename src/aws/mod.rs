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
    pub access_key_id: &'a str,
    pub secret_access_key: &'a SecretString,
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
    #[error("AWS refused the MFA code: {message}")]
    BadCode { message: String },
    #[error("AWS does not accept the access key: {message}")]
    BadKey { message: String },
    #[error("the credentials have expired: {message}")]
    Expired { message: String },
    #[error("this machine's clock is wrong (AWS: {message})")]
    ClockSkew { message: String },
    /// AssumeRole refused: the role does not exist, its trust policy does not admit the caller,
    /// or it requires MFA and the session has none.
    #[error("AWS refused to let this session assume {role_arn}: {message}")]
    RoleDenied { role_arn: String, message: String },
    #[error("AWS denied {action}: {code}: {message}")]
    Denied {
        action: &'static str,
        code: String,
        message: String,
    },
    #[error("cannot reach AWS ({action}) at {endpoint}: {detail}")]
    Unreachable {
        action: &'static str,
        endpoint: String,
        detail: String,
    },
    #[error("AWS answered {action} without {what}")]
    Incomplete {
        action: &'static str,
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
