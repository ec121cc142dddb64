//! The endpoint policy of every AWS call (STS, IAM, the sign-in endpoint): which URL a call
//! goes to and which setting chose it, and the rule that it is `https://`, or plain `http://`
//! only to this machine (127.0.0.0/8, `[::1]`, `localhost`: the sandbox, emulators).
//!
//! Over plain http a GetSessionToken carries the MFA code and a SigV4 signature made with the
//! long-term key, readable by anyone on the path. Two checks keep it off the network:
//! [`resolve`] and [`Resolved::check`] before anything is sent (their error names the setting), and
//! [`Guard`], an SDK interceptor that refuses the final request URI, whatever the SDK resolved.
//!
//! breakglass decides the endpoint itself and hands it to the SDK as a service-level setting,
//! so the SDK's own resolution never applies: an `endpoint_url` (or a `[services]` section) in
//! the AWS shared config file is **not** honoured. That file belongs to the tools that run
//! with the credentials breakglass hands out (`credential_process`), not to breakglass's own
//! calls, whose endpoint is the profile's `sts_endpoint`.

use std::error::Error as StdError;
use std::fmt;

use aws_sdk_sts::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_sts::config::{ConfigBag, Intercept, RuntimeComponents};

use super::console::Partition;
use super::Endpoint;

/// An AWS service breakglass calls through the SDK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// AWS STS (GetSessionToken, AssumeRole, GetCallerIdentity).
    Sts,
    /// AWS IAM (enrolment).
    Iam,
    /// AWS Organizations (the drill's account list).
    Organizations,
    /// Amazon EventBridge (the drill's check of each account's alert rule).
    Events,
    /// Amazon SNS (activation notices).
    Sns,
}

impl Service {
    /// `"AWS STS"`, `"AWS IAM"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sts => "AWS STS",
            Self::Iam => "AWS IAM",
            Self::Organizations => "AWS Organizations",
            Self::Events => "Amazon EventBridge",
            Self::Sns => "Amazon SNS",
        }
    }

    /// The service-specific endpoint variable (`AWS_ENDPOINT_URL_STS`, `AWS_ENDPOINT_URL_IAM`).
    pub fn env_var(self) -> &'static str {
        match self {
            Self::Sts => "AWS_ENDPOINT_URL_STS",
            Self::Iam => "AWS_ENDPOINT_URL_IAM",
            Self::Organizations => "AWS_ENDPOINT_URL_ORGANIZATIONS",
            Self::Events => "AWS_ENDPOINT_URL_EVENTBRIDGE",
            Self::Sns => "AWS_ENDPOINT_URL_SNS",
        }
    }
}

/// The setting an endpoint URL came from, as the refusal names it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndpointSource {
    /// [`Endpoint::url`]: the profile's `sts_endpoint` (a bad one is refused when the config
    /// is read, at its `file:line`), `enroll --endpoint`, the sandbox.
    Explicit,
    /// An environment variable: `AWS_ENDPOINT_URL_STS`, `AWS_ENDPOINT_URL_IAM` or
    /// `AWS_ENDPOINT_URL`.
    Env {
        /// The variable's name.
        variable: &'static str,
    },
    /// The region's own endpoint (always https).
    Default,
    /// The sign-in (federation) endpoint: `console --signin-endpoint`, else the partition's.
    Signin,
    /// The URI of a request the SDK was about to send ([`Guard`]'s check): whatever the SDK
    /// resolved, past the checks that name a setting.
    Request,
}

impl fmt::Display for EndpointSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Explicit => f.write_str("the profile's sts_endpoint (or enroll --endpoint)"),
            Self::Env { variable } => write!(f, "the environment variable {variable}"),
            Self::Default => f.write_str("the region's default endpoint"),
            Self::Signin => f.write_str("the sign-in endpoint (console --signin-endpoint)"),
            Self::Request => f.write_str("the request the AWS SDK was about to send"),
        }
    }
}

/// An endpoint URL and the setting it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The URL a call goes to.
    pub url: String,
    /// Where it came from.
    pub source: EndpointSource,
}

impl Resolved {
    /// The URL to hand the SDK as its endpoint: `None` for [`EndpointSource::Default`], which
    /// the SDK's own rules make (FIPS or dual-stack variants included).
    pub fn sdk_url(&self) -> Option<String> {
        (self.source != EndpointSource::Default).then(|| self.url.clone())
    }

    /// Applies the policy ([`allowed`]); the refusal names the URL and its setting.
    pub fn check(&self, service: Service) -> Result<(), super::Error> {
        if allowed(&self.url) {
            return Ok(());
        }
        Err(super::Error::InsecureEndpoint {
            service: service.name(),
            url: self.url.clone(),
            setting: self.source.clone(),
        })
    }
}

/// The URL a call to `service` goes to: the explicit [`Endpoint::url`], else
/// `AWS_ENDPOINT_URL_STS` (`AWS_ENDPOINT_URL_IAM`), else `AWS_ENDPOINT_URL`, else the
/// region's endpoint (`https://sts.REGION.amazonaws.com`, `…amazonaws.com.cn` in China;
/// IAM's global one). `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true` ignores the variables, as the
/// SDK does. The AWS config file is never read (module doc).
pub fn resolve(endpoint: &Endpoint, service: Service) -> Resolved {
    resolve_with(endpoint, service, |k| std::env::var(k).ok())
}

/// [`resolve`] with the environment read through `get`.
pub fn resolve_with(
    endpoint: &Endpoint,
    service: Service,
    get: impl Fn(&str) -> Option<String>,
) -> Resolved {
    if let Some(url) = &endpoint.url {
        return Resolved {
            url: url.clone(),
            source: EndpointSource::Explicit,
        };
    }
    let env = |k: &str| get(k).filter(|v| !v.is_empty());
    let ignore = env("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    if !ignore {
        for variable in [service.env_var(), "AWS_ENDPOINT_URL"] {
            if let Some(url) = env(variable) {
                return Resolved {
                    url,
                    source: EndpointSource::Env { variable },
                };
            }
        }
    }
    let region = &endpoint.region;
    let url = match (Partition::of_region(region), service) {
        (Partition::China, Service::Sts) => format!("https://sts.{region}.amazonaws.com.cn"),
        (Partition::China, Service::Iam) => format!("https://iam.{region}.amazonaws.com.cn"),
        (Partition::GovCloud, Service::Iam) => "https://iam.us-gov.amazonaws.com".into(),
        (_, Service::Iam) => "https://iam.amazonaws.com".into(),
        (_, Service::Sts) => format!("https://sts.{region}.amazonaws.com"),
        (Partition::China, Service::Organizations) => {
            "https://organizations.cn-northwest-1.amazonaws.com.cn".into()
        }
        (Partition::GovCloud, Service::Organizations) => {
            "https://organizations.us-gov-west-1.amazonaws.com".into()
        }
        (_, Service::Organizations) => "https://organizations.us-east-1.amazonaws.com".into(),
        (Partition::China, Service::Events) => format!("https://events.{region}.amazonaws.com.cn"),
        (_, Service::Events) => format!("https://events.{region}.amazonaws.com"),
        (Partition::China, Service::Sns) => format!("https://sns.{region}.amazonaws.com.cn"),
        (_, Service::Sns) => format!("https://sns.{region}.amazonaws.com"),
    };
    Resolved {
        url,
        source: EndpointSource::Default,
    }
}

/// The host of `url` when it is `scheme://host[:port][/…]` with no user info; brackets of an
/// IPv6 literal removed.
fn host(rest: &str) -> Option<&str> {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    (!host.is_empty()).then_some(host)
}

/// Whether `host` is this machine: `localhost`, 127.0.0.0/8 or `::1`.
pub fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether `url` (http or https) points at this machine.
pub fn is_loopback(url: &str) -> bool {
    url.split_once("://")
        .and_then(|(_, rest)| host(rest))
        .is_some_and(is_loopback_host)
}

/// The policy: `https://HOST…`, or `http://` to a loopback host. Anything else (plain http to
/// another host, another scheme, user info in the URL, no host) is refused.
pub fn allowed(url: &str) -> bool {
    let Some((scheme, rest)) = url.split_once("://") else {
        return false;
    };
    let Some(host) = host(rest) else {
        return false;
    };
    scheme.eq_ignore_ascii_case("https")
        || (scheme.eq_ignore_ascii_case("http") && is_loopback_host(host))
}

/// [`Guard`]'s refusal of a request; a call's error is sorted as [`super::Error::InsecureEndpoint`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("breakglass refused to send a request to {uri}: not https, and not to this machine")]
pub struct Refused {
    /// The request's URI, without its query.
    pub uri: String,
}

/// An SDK interceptor that refuses, before it is sent, every request whose URI breaks the
/// policy ([`allowed`]): registered on every STS and IAM client, it catches whatever the SDK
/// resolved, past [`Resolved::check`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Guard;

impl Guard {
    /// The check on one request URI.
    pub fn admit(uri: &str) -> Result<(), Refused> {
        if allowed(uri) {
            return Ok(());
        }
        Err(Refused {
            uri: uri.split('?').next().unwrap_or(uri).to_owned(),
        })
    }
}

impl Intercept for Guard {
    fn name(&self) -> &'static str {
        "breakglass endpoint policy"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn StdError + Send + Sync>> {
        Ok(Self::admit(context.request().uri())?)
    }
}

/// [`Guard`]'s refusal, if it is in `err`'s chain.
pub(crate) fn refused_in(err: &(dyn StdError + 'static)) -> Option<Refused> {
    super::net::chain(err).find_map(|e| e.downcast_ref::<Refused>().cloned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_admits_https_and_loopback_http_only() {
        for ok in [
            "https://sts.us-east-1.amazonaws.com",
            "https://10.0.0.1:8443/",
            "HTTPS://sts.example.com",
            "http://127.0.0.1:4566",
            "http://127.1.2.3/",
            "http://[::1]:8080/x",
            "http://localhost",
            "http://LOCALHOST:1/",
        ] {
            assert!(allowed(ok), "{ok}");
        }
        for bad in [
            "http://10.0.0.1:4566",
            "http://sts.us-east-1.amazonaws.com",
            "http://localhost.evil.example/",
            "http://127.0.0.1.evil.example/",
            "http://[::2]/",
            "http://user@127.0.0.1/",
            "ftp://127.0.0.1/",
            "127.0.0.1:4566",
            "https://",
            "http:///x",
        ] {
            assert!(!allowed(bad), "{bad}");
        }
        assert!(is_loopback("http://127.0.0.1:4566"));
        assert!(is_loopback("https://[::1]/"));
        assert!(!is_loopback("https://sts.amazonaws.com"));
    }

    #[test]
    fn resolution_names_the_setting() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let e = Endpoint::new("eu-west-1", None);
        let r = resolve_with(&e, Service::Sts, vars(&[]));
        assert_eq!(r.url, "https://sts.eu-west-1.amazonaws.com");
        assert_eq!(r.source, EndpointSource::Default);
        assert_eq!(r.sdk_url(), None);
        let r = resolve_with(&e, Service::Iam, vars(&[]));
        assert_eq!(r.url, "https://iam.amazonaws.com");
        let env = vars(&[
            ("AWS_ENDPOINT_URL", "http://10.0.0.2:1"),
            ("AWS_ENDPOINT_URL_STS", "http://10.0.0.1:1"),
        ]);
        let r = resolve_with(&e, Service::Sts, env);
        assert_eq!(
            r.source,
            EndpointSource::Env {
                variable: "AWS_ENDPOINT_URL_STS"
            }
        );
        assert_eq!(r.sdk_url().as_deref(), Some("http://10.0.0.1:1"));
        let r = resolve_with(&e, Service::Iam, env);
        assert_eq!(
            r.source,
            EndpointSource::Env {
                variable: "AWS_ENDPOINT_URL"
            }
        );
        let err = r.check(Service::Iam).unwrap_err().to_string();
        assert!(
            err.contains("http://10.0.0.2:1") && err.contains("AWS_ENDPOINT_URL"),
            "{err}"
        );
        let ignored = vars(&[
            ("AWS_ENDPOINT_URL_STS", "http://10.0.0.1:1"),
            ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true"),
        ]);
        assert_eq!(
            resolve_with(&e, Service::Sts, ignored).source,
            EndpointSource::Default
        );
        let explicit = Endpoint::new("eu-west-1", Some("http://127.0.0.1:4566".into()));
        let r = resolve_with(&explicit, Service::Sts, env);
        assert_eq!(r.source, EndpointSource::Explicit);
        assert!(r.check(Service::Sts).is_ok());
    }

    #[test]
    fn the_guard_refuses_plain_http_to_another_host() {
        assert!(Guard::admit("http://127.0.0.1:4566/").is_ok());
        assert!(Guard::admit("https://sts.us-east-1.amazonaws.com/").is_ok());
        let refused =
            Guard::admit("http://10.0.0.1:4566/?Action=GetSessionToken&TokenCode=1").unwrap_err();
        assert_eq!(refused.uri, "http://10.0.0.1:4566/");
        let boxed: Box<dyn StdError + Send + Sync> = Box::new(refused.clone());
        assert_eq!(refused_in(&*boxed), Some(refused));
    }
}
