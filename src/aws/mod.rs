//! AWS calls: STS (GetSessionToken, AssumeRole, GetCallerIdentity) and IAM (enrolment), with
//! errors sorted into what an operator can act on; and a reader of the AWS shared config file.

pub mod config_file;
pub mod console;
pub mod endpoint;
pub mod events;
pub mod iam;
mod net;
pub mod org;
pub mod pace;
pub mod policy;
pub mod probe;
pub mod sns;
pub mod sts;

use std::time::{Duration, Instant};

use aws_credential_types::Credentials;
use secrecy::{ExposeSecret, SecretString};

pub use endpoint::{EndpointSource, Service};
pub use net::{Deadlines, Failure, Retries, DEFAULT_INITIAL_BACKOFF, DEFAULT_MAX_ATTEMPTS};

/// Where and how to call AWS.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The region (`us-east-1`…); also picks the partition's endpoints.
    pub region: String,
    /// Explicit endpoint (profile `sts_endpoint`, the sandbox); else `AWS_ENDPOINT_URL_STS`
    /// (`_IAM`) or `AWS_ENDPOINT_URL`, else the region's: see [`endpoint::resolve`].
    pub url: Option<String>,
    /// The connect and call deadlines of every call (and of [`probe::probe`]).
    pub deadlines: Deadlines,
    /// How often an STS or IAM call is tried.
    pub retries: Retries,
    /// Seconds the requests' signing time is moved ahead of the system clock: the clock seam
    /// (`clock::SkewedClock`) of the demo, which moves its clock and the emulator's together
    /// by days. 0 everywhere else.
    pub signing_ahead_secs: u64,
    /// One HTTP client for every call made with this endpoint ([`Endpoint::sharing_connections`]):
    /// TLS roots loaded once, connections kept alive. `None`: each call gets the SDK's default
    /// client of its own, as a ceremony's few calls do.
    pub http: Option<aws_smithy_runtime_api::client::http::SharedHttpClient>,
}

/// The SDK's clock, `ahead_secs` past the system clock.
#[derive(Debug)]
struct AheadTimeSource(u64);

impl aws_smithy_async::time::TimeSource for AheadTimeSource {
    fn now(&self) -> std::time::SystemTime {
        std::time::SystemTime::now() + Duration::from_secs(self.0)
    }
}

impl Endpoint {
    /// `region` and `url` with the default deadlines and retries.
    pub fn new(region: impl Into<String>, url: Option<String>) -> Self {
        Self {
            region: region.into(),
            url,
            deadlines: Deadlines::default(),
            retries: Retries::default(),
            signing_ahead_secs: 0,
            http: None,
        }
    }

    /// This endpoint with one HTTP client shared by all its calls (the drill's thousands).
    pub fn sharing_connections(mut self) -> Self {
        use aws_smithy_http_client::tls;
        self.http = Some(
            aws_smithy_http_client::Builder::new()
                .tls_provider(tls::Provider::Rustls(
                    tls::rustls_provider::CryptoMode::AwsLc,
                ))
                .build_https(),
        );
        self
    }

    /// The profile's region, `sts_endpoint` and deadlines (`connect_timeout_secs`,
    /// `call_timeout_secs`), and the default retries.
    pub fn of(profile: &crate::config::Profile) -> Self {
        Self {
            deadlines: Deadlines::of(profile),
            ..Self::new(profile.region.clone(), profile.sts_endpoint.clone())
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

/// The shared SDK configuration of a call (region, static credentials, deadlines, retries),
/// and the endpoint URL to set on the service's own config: `None` for the region's default.
/// The endpoint is [`endpoint::resolve`]d and checked here, before any client exists: plain
/// http to a host other than this machine is [`Error::InsecureEndpoint`]. Setting the URL (or
/// its absence) on the service config overrides whatever the SDK's loader found, the AWS
/// config file's `endpoint_url` included.
pub(crate) async fn sdk_config(
    endpoint: &Endpoint,
    signer: &Signer<'_>,
    service: Service,
) -> Result<(aws_config::SdkConfig, Option<String>), Error> {
    let resolved = endpoint::resolve(endpoint, service);
    resolved.check(service)?;
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(endpoint.deadlines.connect)
        .operation_timeout(endpoint.deadlines.call)
        .build();
    let retries = aws_config::retry::RetryConfig::standard()
        .with_max_attempts(endpoint.retries.max_attempts.max(1))
        .with_initial_backoff(endpoint.retries.initial_backoff);
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(endpoint.region.clone()))
        .credentials_provider(signer.credentials())
        .timeout_config(timeouts)
        .retry_config(retries);
    if endpoint.signing_ahead_secs > 0 {
        loader = loader.time_source(AheadTimeSource(endpoint.signing_ahead_secs));
    }
    if let Some(http) = &endpoint.http {
        loader = loader.http_client(http.clone());
    }
    let config = loader.load().await;
    Ok((config, resolved.sdk_url()))
}

/// One STS or IAM call under way: when it started and what its attempts did, to sort its
/// failure.
pub(crate) struct Call<'a> {
    service: &'static str,
    action: &'static str,
    endpoint: &'a Endpoint,
    started: Instant,
    tracker: net::Tracker,
}

impl<'a> Call<'a> {
    /// A call of `action` to `service` (`"AWS STS"`, `"AWS IAM"`), starting now.
    pub(crate) fn start(
        service: &'static str,
        action: &'static str,
        endpoint: &'a Endpoint,
    ) -> Self {
        Self {
            service,
            action,
            endpoint,
            started: Instant::now(),
            tracker: net::Tracker::new(endpoint.deadlines),
        }
    }

    /// The interceptor to register on the client, which sees each attempt.
    pub(crate) fn tracker(&self) -> net::Tracker {
        self.tracker.clone()
    }

    /// The host the call went to (else the one it was resolved to).
    fn host(&self) -> String {
        let service = match self.service {
            "AWS IAM" => Service::Iam,
            "AWS Organizations" => Service::Organizations,
            "Amazon EventBridge" => Service::Events,
            "Amazon SNS" => Service::Sns,
            _ => Service::Sts,
        };
        self.tracker
            .host()
            .unwrap_or_else(|| net::authority(&endpoint::resolve(self.endpoint, service).url))
    }

    fn unreachable(&self, failure: Failure) -> Error {
        Error::Unreachable {
            service: self.service,
            action: self.action,
            host: self.host(),
            may_have_arrived: self.tracker.may_have_arrived(),
            failure,
            elapsed: self.started.elapsed(),
            attempts: self.tracker.attempts(),
        }
    }

    /// Sorts an SDK failure.
    pub(crate) fn error<E>(&self, err: aws_sdk_sts::error::SdkError<E>) -> Error
    where
        E: aws_sdk_sts::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        use aws_sdk_sts::error::SdkError;
        if let Some(refused) = endpoint::refused_in(&err) {
            return Error::InsecureEndpoint {
                service: self.service,
                url: refused.uri,
                setting: EndpointSource::Request,
            };
        }
        let deadlines = &self.endpoint.deadlines;
        let se = match &err {
            SdkError::ServiceError(se) => se,
            SdkError::TimeoutError(_) => {
                // The deadline may have cut the wait before a retry of attempts that never got
                // a connection: how they failed is the news, not the deadline.
                let failure = match self.tracker.last_failure() {
                    Some(f) if !self.tracker.may_have_arrived() => f,
                    _ => Failure::CallTimeout {
                        limit: deadlines.call,
                    },
                };
                return self.unreachable(failure);
            }
            SdkError::DispatchFailure(d) => {
                let failure = match d.as_connector_error() {
                    Some(c) if c.is_timeout() => Failure::ConnectTimeout {
                        limit: deadlines.connect,
                    },
                    Some(c) => net::failure_of(c, deadlines),
                    None => net::failure_of(&err, deadlines),
                };
                return self.unreachable(failure);
            }
            _ => return self.unreachable(net::failure_of(&err, deadlines)),
        };
        let status = se.raw().status().as_u16();
        let code = se.err().code().unwrap_or("Unknown").to_owned();
        let message = se.err().message().unwrap_or("no message").to_owned();
        if THROTTLING_CODES.contains(&code.as_str()) {
            return Error::Throttled {
                action: self.action,
                code,
                message: net::one_line(&message),
                attempts: self.tracker.attempts(),
            };
        }
        if (200..300).contains(&status) {
            return Error::BadAnswer {
                action: self.action,
                problem: AnswerProblem::Unreadable,
            };
        }
        if status >= 500 {
            return self.unreachable(Failure::ServerError { status });
        }
        classify_code(self.action, code, message)
    }
}

/// AWS's throttling error codes (the SDK's list, in part): retried, then
/// [`Error::Throttled`].
pub const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "SlowDown",
];

/// What is wrong with an answer of STS that was refused ([`Error::BadAnswer`]). The secret
/// fields are never quoted, and the access key id only by its length.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnswerProblem {
    /// A 2xx answer that is not the call's XML.
    #[error("an answer that cannot be read (not the call's XML)")]
    Unreadable,
    /// No `Credentials` element.
    #[error("no credentials")]
    NoCredentials,
    /// No (or an empty) `AccessKeyId`.
    #[error("no access key id")]
    NoAccessKeyId,
    /// An `AccessKeyId` that is not `ASIA`/`AKIA` and 12-124 more of `[A-Z0-9]`.
    #[error("an access key id that is not ASIA/AKIA followed by A-Z and 0-9 ({len} characters{})", if *control { ", with control characters" } else { "" })]
    BadAccessKeyId {
        /// Its length in characters.
        len: usize,
        /// It holds control or non-printable characters.
        control: bool,
    },
    /// An empty `SecretAccessKey`.
    #[error("an empty secret access key")]
    EmptySecret,
    /// An empty `SessionToken`.
    #[error("an empty session token")]
    EmptyToken,
    /// No `Expiration`, or the epoch (the SDK reads a missing one as 0).
    #[error("no expiration")]
    NoExpiration,
    /// An expiration not after this machine's time.
    #[error("an expiration in the past ({}, now {})", crate::audit::rfc3339(*expiration), crate::audit::rfc3339(*now))]
    Expired {
        /// The expiration given, Unix seconds.
        expiration: u64,
        /// This machine's time, Unix seconds.
        now: u64,
    },
    /// An expiration later than the duration asked for allows (plus
    /// [`EXPIRATION_SKEW_SECS`] of clock skew).
    #[error("an expiration later than asked for ({}, at most {})", crate::audit::rfc3339(*expiration), crate::audit::rfc3339(*limit))]
    TooLate {
        /// The expiration given, Unix seconds.
        expiration: u64,
        /// The latest acceptable, Unix seconds.
        limit: u64,
    },
}

/// The clock skew allowed between AWS's expiration and this machine's clock, seconds.
pub const EXPIRATION_SKEW_SECS: u64 = 300;

/// AWS failures, sorted into what the operator can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The endpoint is neither `https://` nor plain `http://` to this machine: the call was
    /// refused before any connection (the MFA code and the request's signature would have
    /// crossed the network unencrypted). See [`endpoint`].
    #[error("refusing to call {service} at {url} (from {setting}): plain http to a host other than this machine would put the request, its signature and any MFA code on the network unencrypted")]
    InsecureEndpoint {
        /// `"AWS STS"`, `"AWS IAM"`, `"the sign-in endpoint"`.
        service: &'static str,
        /// The URL refused.
        url: String,
        /// The setting it came from.
        setting: EndpointSource,
    },
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
    /// No usable answer from AWS: DNS, connection, TLS, deadline, a cut or garbled answer, or
    /// a server error on every attempt. One line; [`Failure`] says which.
    #[error("cannot reach {service} at {host}: {failure} ({})", if *attempts > 1 { format!("{attempts} attempts, {}", net::secs(*elapsed)) } else { format!("after {}", net::secs(*elapsed)) })]
    Unreachable {
        /// `"AWS STS"`, `"AWS IAM"`.
        service: &'static str,
        /// The call (`"GetSessionToken"`…), or `"probe"` for [`probe::probe`].
        action: &'static str,
        /// `host[:port]` the call went to.
        host: String,
        /// What went wrong (on the last attempt).
        failure: Failure,
        /// From the start of the call to the failure.
        elapsed: Duration,
        /// Attempts handed to the HTTP client (0: none got that far).
        attempts: u32,
        /// False only when the request provably never reached the server: no attempt ever
        /// got a connection (each failed in DNS, TCP connect, the connect deadline or the TLS
        /// handshake, or the call deadline struck while it was still connecting). Then an MFA
        /// code sent with it is unused and its window may be used again. True whenever an
        /// attempt had a connection: AWS may have acted on it (a lost answer, a reset, a
        /// 5xx, a hung endpoint).
        may_have_arrived: bool,
    },
    /// AWS throttled the call on its last attempt (`Throttling`, `ThrottlingException`,
    /// `RequestLimitExceeded`…), after the retries.
    #[error("AWS throttled {action} ({code}, {attempts} attempts): {message}")]
    Throttled {
        /// The call.
        action: &'static str,
        /// AWS's error code.
        code: String,
        /// AWS's message, one line.
        message: String,
        /// Attempts made.
        attempts: u32,
    },
    /// AWS (or something posing as it) answered with success, but the answer is unusable or
    /// implausible: it was discarded, never stored or printed.
    #[error("AWS answered {action} with {problem}; the answer was discarded")]
    BadAnswer {
        /// The call.
        action: &'static str,
        /// What is wrong with it.
        problem: AnswerProblem,
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

/// Sorts an error code AWS answered.
fn classify_code(action: &'static str, code: String, message: String) -> Error {
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use aws_smithy_runtime_api::client::http::{
        HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
    };
    use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
    use aws_smithy_runtime_api::client::result::ConnectorError;
    use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;

    use super::*;

    /// An HTTP client that counts the requests handed to it and fails each one.
    #[derive(Debug, Clone, Default)]
    struct Counting(Arc<AtomicUsize>);

    impl HttpConnector for Counting {
        fn call(&self, _request: HttpRequest) -> HttpConnectorFuture {
            self.0.fetch_add(1, Ordering::SeqCst);
            HttpConnectorFuture::new(async {
                Err(ConnectorError::other("the test's connector".into(), None))
            })
        }
    }

    impl HttpClient for Counting {
        fn http_connector(
            &self,
            _settings: &HttpConnectorSettings,
            _components: &RuntimeComponents,
        ) -> SharedHttpConnector {
            SharedHttpConnector::new(self.clone())
        }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// GetCallerIdentity on a client built by hand (not through [`sdk_config`], so the early
    /// check is bypassed), with the guard, to `url`: the call's error and the requests sent.
    fn bypassing_the_early_check(url: &str) -> (Error, usize) {
        let endpoint = Endpoint::new("us-east-1", Some(url.to_owned()));
        let call = Call::start("AWS STS", "GetCallerIdentity", &endpoint);
        let http = Counting::default();
        let config = aws_sdk_sts::Config::builder()
            .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
            .region(aws_sdk_sts::config::Region::new("us-east-1"))
            .credentials_provider(Credentials::new("AKIATEST", "secret", None, None, "test"))
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .endpoint_url(url)
            .http_client(http.clone())
            .interceptor(call.tracker())
            .interceptor(endpoint::Guard)
            .build();
        let client = aws_sdk_sts::Client::from_conf(config);
        let err = rt()
            .block_on(client.get_caller_identity().send())
            .unwrap_err();
        (call.error(err), http.0.load(Ordering::SeqCst))
    }

    #[test]
    fn the_guard_stops_plain_http_to_another_host_before_it_is_sent() {
        let (e, sent) = bypassing_the_early_check("http://10.0.0.1:9");
        assert_eq!(sent, 0, "the request reached the HTTP client");
        match e {
            Error::InsecureEndpoint {
                service,
                url,
                setting,
            } => {
                assert_eq!(service, "AWS STS");
                assert_eq!(url, "http://10.0.0.1:9/");
                assert_eq!(setting, EndpointSource::Request);
            }
            other => panic!("not refused by the guard: {other}"),
        }
        // The same client to loopback: the request is handed to the HTTP client.
        let (e, sent) = bypassing_the_early_check("http://127.0.0.1:9");
        assert_eq!(sent, 1);
        assert!(matches!(e, Error::Unreachable { .. }), "{e}");
    }

    #[test]
    fn every_call_refuses_an_insecure_endpoint_before_any_connection() {
        let secret = SecretString::from("secret".to_owned());
        let signer = Signer {
            access_key_id: "AKIATEST",
            secret_access_key: &secret,
            session_token: None,
        };
        let endpoint = Endpoint::new("us-east-1", Some("http://10.0.0.1:9".into()));
        let rt = rt();
        let sts = rt
            .block_on(sts::get_caller_identity(&endpoint, &signer))
            .err()
            .unwrap();
        let iam = rt
            .block_on(iam::create_access_key(&endpoint, &signer, "breakglass"))
            .err()
            .unwrap();
        let probe = rt.block_on(probe::probe(&endpoint)).err().unwrap();
        for (e, service) in [(sts, "AWS STS"), (iam, "AWS IAM"), (probe, "AWS STS")] {
            assert!(
                matches!(&e, Error::InsecureEndpoint { service: s, setting: EndpointSource::Explicit, .. } if *s == service),
                "{e}"
            );
            assert!(e.to_string().contains("http://10.0.0.1:9"), "{e}");
        }
        // https passes the policy: the call goes on to the network (and fails there).
        let https = Endpoint::new("us-east-1", Some("https://name.invalid".into()));
        let e = rt
            .block_on(sts::get_caller_identity(&https, &signer))
            .err()
            .unwrap();
        assert!(matches!(e, Error::Unreachable { .. }), "{e}");
    }

    /// Set in the child process of [`the_aws_config_files_endpoint_is_not_honoured`].
    const CHILD: &str = "BREAKGLASS_TEST_CONFIG_FILE_ENDPOINT_CHILD";

    /// An `endpoint_url` in the AWS config file (the profile's, and its `[services]` section's
    /// for STS) is not used: the call goes to the region's own endpoint. Run in a child
    /// process, since the SDK reads the file named by the process's environment. Were the file
    /// honoured, the guard would refuse its plain-http endpoint.
    #[test]
    fn the_aws_config_files_endpoint_is_not_honoured() {
        if std::env::var_os(CHILD).is_some() {
            let secret = SecretString::from("secret".to_owned());
            let signer = Signer {
                access_key_id: "AKIATEST",
                secret_access_key: &secret,
                session_token: None,
            };
            // A region with no real endpoint: the call fails in DNS, without reaching AWS.
            let mut endpoint = Endpoint::new("xx-nowhere-1", None);
            endpoint.retries.max_attempts = 1;
            let e = rt()
                .block_on(sts::get_caller_identity(&endpoint, &signer))
                .err()
                .unwrap();
            assert!(!matches!(e, Error::InsecureEndpoint { .. }), "{e}");
            if let Error::Unreachable { host, .. } = &e {
                assert_eq!(host, "sts.xx-nowhere-1.amazonaws.com", "{e}");
            }
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("aws-config");
        std::fs::write(
            &file,
            "[default]\nendpoint_url = http://10.0.0.1:9\n\
             [profile bg]\nendpoint_url = http://10.0.0.1:9\nservices = local\n\
             [services local]\nsts =\n  endpoint_url = http://10.0.0.1:9\n",
        )
        .unwrap();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "aws::tests::the_aws_config_files_endpoint_is_not_honoured",
                "--exact",
                "--nocapture",
            ])
            .env(CHILD, "1")
            .env("AWS_CONFIG_FILE", &file)
            .env("AWS_PROFILE", "bg")
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("AWS_ENDPOINT_URL_STS")
            .env_remove("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && text.contains("1 passed"),
            "the child failed:\n{text}"
        );
    }
}
