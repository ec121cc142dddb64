//! One HTTPS POST of a notice, within a deadline, retried while the server may be passing
//! trouble (no connection, 429, 5xx).

use std::time::{Duration, Instant};

use crate::config::Webhook;

/// Attempts of a delivery at most (the deadline may end it sooner).
const ATTEMPTS: u32 = 3;
/// The wait before the second attempt; doubled before the third.
const FIRST_WAIT: Duration = Duration::from_millis(250);
/// The longest answer read (a chat webhook answers `ok`).
const MAX_ANSWER: u64 = 16 * 1024;

/// Posts `body` (JSON) to `hook`; `Err` says why it was not delivered, naming the webhook's
/// setting or the server's answer.
pub fn post(hook: &Webhook, body: &str, deadline: Duration) -> Result<(), String> {
    if !crate::aws::endpoint::allowed(&hook.url) {
        // Checked when the config was read; kept so that no caller can post in clear.
        return Err(format!(
            "webhook {:?}: {} is not https:// (http:// only to this machine)",
            hook.name,
            redact(&hook.url)
        ));
    }
    let started = Instant::now();
    let agent = agent(hook, deadline)?;
    let mut wait = FIRST_WAIT;
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        let left = deadline.saturating_sub(started.elapsed());
        if left.is_zero() {
            break;
        }
        let response = agent
            .post(&hook.url)
            .config()
            .timeout_global(Some(left))
            .build()
            .header("content-type", "application/json")
            .send(body);
        let retry = match response {
            Ok(mut r) => {
                let status = r.status().as_u16();
                if (200..300).contains(&status) {
                    return Ok(());
                }
                let answer = r
                    .body_mut()
                    .with_config()
                    .limit(MAX_ANSWER)
                    .read_to_string()
                    .unwrap_or_default();
                last = format!(
                    "webhook {:?} answered HTTP {status}{}",
                    hook.name,
                    excerpt(&answer)
                );
                status == 429 || status >= 500
            }
            Err(e) => {
                last = format!(
                    "webhook {:?} at {}: {}",
                    hook.name,
                    redact(&hook.url),
                    why(&e, hook)
                );
                !is_tls(&e)
            }
        };
        if !retry || attempt == ATTEMPTS {
            break;
        }
        let left = deadline.saturating_sub(started.elapsed());
        std::thread::sleep(wait.min(left));
        wait *= 2;
    }
    if started.elapsed() >= deadline {
        last += &format!(
            " (gave up after {:.1} s: [notify] timeout_secs)",
            deadline.as_secs_f64()
        );
    }
    Err(last)
}

/// The client: no redirect followed (a notice goes where it is configured, or nowhere), and
/// the webhook's `ca_file` trusted besides the system's roots.
fn agent(hook: &Webhook, deadline: Duration) -> Result<ureq::Agent, String> {
    let mut config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_connect(Some(deadline))
        .timeout_global(Some(deadline));
    if let Some(path) = &hook.ca_file {
        let pem = std::fs::read(path).map_err(|e| {
            format!(
                "webhook {:?}: cannot read its ca_file {}: {e}",
                hook.name,
                path.display()
            )
        })?;
        let mut roots: Vec<ureq::tls::Certificate<'static>> = Vec::new();
        for item in ureq::tls::parse_pem(&pem) {
            if let Ok(ureq::tls::PemItem::Certificate(c)) = item {
                roots.push(c);
            }
        }
        if roots.is_empty() {
            return Err(format!(
                "webhook {:?}: its ca_file {} holds no PEM certificate",
                hook.name,
                path.display()
            ));
        }
        let system = rustls_native_certs::load_native_certs();
        roots.extend(
            system
                .certs
                .into_iter()
                .map(|c| ureq::tls::Certificate::from_der(&c).to_owned()),
        );
        config = config.tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::new_with_certs(&roots))
                .build(),
        );
    }
    Ok(ureq::Agent::new_with_config(config.build()))
}

/// A failed TLS handshake (a certificate refused…): not worth retrying.
fn is_tls(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) => true,
        ureq::Error::Io(io) => io
            .get_ref()
            .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some()),
        _ => false,
    }
}

/// What a failed exchange was, in words, with the setting to check.
fn why(e: &ureq::Error, hook: &Webhook) -> String {
    if is_tls(e) {
        return format!(
            "its TLS certificate is not trusted or not valid for the host ({e}){}",
            if hook.ca_file.is_some() {
                ""
            } else {
                "; an internal server's CA goes in the webhook's ca_file"
            }
        );
    }
    match e {
        ureq::Error::Timeout(_) => "no answer in time".into(),
        ureq::Error::HostNotFound => "its host is not found (DNS)".into(),
        ureq::Error::ConnectionFailed => "the connection was refused".into(),
        ureq::Error::Io(io) => format!("{io}"),
        other => format!("{other}"),
    }
}

/// The URL without its path: a chat webhook's path is its secret.
fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
            let more = rest.len() > authority.len();
            format!("{scheme}://{authority}{}", if more { "/…" } else { "" })
        }
        None => "(not a URL)".into(),
    }
}

/// A short, printable excerpt of an answer.
fn excerpt(answer: &str) -> String {
    let t: String = answer
        .chars()
        .filter(|c| !c.is_control())
        .take(120)
        .collect();
    if t.trim().is_empty() {
        String::new()
    } else {
        format!(": {}", t.trim())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_of_a_webhook_is_never_shown() {
        assert_eq!(
            redact("https://hooks.slack.com/services/T0/B0/SECRET"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(redact("https://h:8443"), "https://h:8443");
    }

    #[test]
    fn plain_http_elsewhere_is_refused_before_any_connection() {
        let hook = Webhook {
            name: "x".into(),
            url: "http://192.0.2.1/hook".into(),
            required: true,
            ca_file: None,
        };
        let e = post(&hook, "{}", Duration::from_secs(1)).unwrap_err();
        assert!(e.contains("not https://"), "{e}");
    }
}
