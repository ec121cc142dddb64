//! A reachability check of the STS endpoint before anyone is asked for a passphrase or an MFA
//! code: DNS, a TCP connection and, for https, a TLS handshake, within the connect deadline.
//! It sends no request, so it can never spend an MFA code.

use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpStream;

use super::endpoint::{self, Service};
use super::{net, Endpoint, Error, Failure};

/// The STS (or, with `iam`, the IAM) endpoint URL a call goes to: [`endpoint::resolve`]'s.
pub fn url(endpoint: &Endpoint, iam: bool) -> String {
    let service = if iam { Service::Iam } else { Service::Sts };
    endpoint::resolve(endpoint, service).url
}

/// `(https, host, port)` of a URL.
fn target(url: &str) -> Option<(bool, String, u16)> {
    let (scheme, _) = url.split_once("://")?;
    let https = match scheme.to_ascii_lowercase().as_str() {
        "https" => true,
        "http" => false,
        _ => return None,
    };
    let authority = net::authority(url);
    let default_port = if https { 443 } else { 80 };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, rest) = v6.split_once(']')?;
        let port = match rest.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None => default_port,
        };
        (host.to_owned(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p.parse().ok()?),
            None => (authority.clone(), default_port),
        }
    };
    (!host.is_empty()).then_some((https, host, port))
}

/// The failure of a TCP connect.
fn connect_failure(e: &std::io::Error) -> Failure {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => Failure::Refused,
        K::HostUnreachable | K::NetworkUnreachable => Failure::NoRoute,
        _ => Failure::Io {
            detail: net::one_line(&e.to_string()),
        },
    }
}

async fn connect(host: &str, port: u16) -> Result<TcpStream, Failure> {
    let addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|_| Failure::Dns)?;
    let mut last = Failure::Dns;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = connect_failure(&e),
        }
    }
    Err(last)
}

/// A TLS handshake as the SDK's client makes it: rustls with aws-lc-rs and the system's root
/// certificates.
async fn handshake(stream: TcpStream, host: &str) -> Result<(), Failure> {
    let tls = |detail: String| Failure::Tls {
        detail: net::one_line(&detail),
    };
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) =
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if added == 0 {
        return Err(tls("no root certificates found on this machine".into()));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| tls(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name =
        rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| tls(e.to_string()))?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
        .map_err(|e| tls(e.to_string()))?;
    Ok(())
}

/// Checks that the STS endpoint [`url`] would call can be reached: first the endpoint policy
/// ([`endpoint::Resolved::check`]: an insecure endpoint is [`Error::InsecureEndpoint`], before
/// any connection), then that the name resolves, a TCP
/// connection opens and, for `https://`, a TLS handshake with a certificate valid for the host
/// completes, all within `endpoint.deadlines.connect`. No HTTP request is sent: an endpoint
/// that accepts connections and then never answers passes (the call deadline catches it).
///
/// The error is [`Error::Unreachable`] with `action: "probe"`, one attempt, and
/// `may_have_arrived: false` (nothing was sent).
pub async fn probe(endpoint: &Endpoint) -> Result<(), Error> {
    let started = Instant::now();
    let resolved = endpoint::resolve(endpoint, Service::Sts);
    resolved.check(Service::Sts)?;
    let url = resolved.url;
    let fail = |failure: Failure| Error::Unreachable {
        service: "AWS STS",
        action: "probe",
        host: net::authority(&url),
        failure,
        elapsed: started.elapsed(),
        attempts: 1,
        may_have_arrived: false,
    };
    let Some((https, host, port)) = target(&url) else {
        return Err(fail(Failure::Io {
            detail: format!("{:?} is not an http(s) URL", net::one_line(&url)),
        }));
    };
    let limit = endpoint.deadlines.connect;
    let work = async {
        let stream = connect(&host, port).await?;
        if https {
            handshake(stream, &host).await?;
        }
        Ok(())
    };
    match tokio::time::timeout(limit, work).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(failure)) => Err(fail(failure)),
        Err(_) => Err(fail(Failure::ConnectTimeout { limit })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_targets() {
        let mut e = Endpoint::new("eu-west-1", None);
        if std::env::var_os("AWS_ENDPOINT_URL").is_none()
            && std::env::var_os("AWS_ENDPOINT_URL_STS").is_none()
        {
            assert_eq!(url(&e, false), "https://sts.eu-west-1.amazonaws.com");
            e.region = "cn-north-1".into();
            assert_eq!(url(&e, false), "https://sts.cn-north-1.amazonaws.com.cn");
        }
        e.url = Some("http://127.0.0.1:4566".into());
        assert_eq!(url(&e, false), "http://127.0.0.1:4566");
        assert_eq!(
            target("https://sts.us-east-1.amazonaws.com/"),
            Some((true, "sts.us-east-1.amazonaws.com".into(), 443))
        );
        assert_eq!(
            target("http://[::1]:8080"),
            Some((false, "::1".into(), 8080))
        );
        assert_eq!(
            target("http://localhost"),
            Some((false, "localhost".into(), 80))
        );
        assert_eq!(target("ftp://x"), None);
        assert_eq!(target("http://h:port"), None);
    }
}
