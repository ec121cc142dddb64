//! The network side of the AWS calls: their deadlines and retries, what a failed exchange was
//! (refused, timed out, reset…), and whether a request may have reached AWS.

use std::error::Error as StdError;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sts::config::interceptors::{
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_sdk_sts::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::client::connection::CaptureSmithyConnection;

use crate::config::{Profile, DEFAULT_CALL_TIMEOUT_SECS, DEFAULT_CONNECT_TIMEOUT_SECS};

/// How long a call to AWS may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// To establish one connection (DNS, TCP and, for https, TLS), per attempt.
    pub connect: Duration,
    /// For the whole call: every attempt, the waits between them, and reading the answer.
    pub call: Duration,
}

impl Default for Deadlines {
    /// [`DEFAULT_CONNECT_TIMEOUT_SECS`] and [`DEFAULT_CALL_TIMEOUT_SECS`].
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(DEFAULT_CONNECT_TIMEOUT_SECS),
            call: Duration::from_secs(DEFAULT_CALL_TIMEOUT_SECS),
        }
    }
}

impl Deadlines {
    /// The profile's `connect_timeout_secs` and `call_timeout_secs`.
    pub fn of(profile: &Profile) -> Self {
        Self {
            connect: Duration::from_secs(profile.connect_timeout_secs),
            call: Duration::from_secs(profile.call_timeout_secs),
        }
    }
}

/// Attempts of an STS or IAM call when nothing else is set.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// The first wait between attempts (before jitter) when nothing else is set.
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_secs(1);

/// How often an STS or IAM call is tried: the SDK's *standard* retry mode, with its attempts
/// made explicit.
///
/// Retried, as possibly transient: a failed connection (refused, reset, DNS, connect
/// timeout), an answer cut short, HTTP 500, 502, 503 and 504, AWS's transient codes
/// (`RequestTimeout`) and its throttling codes (`Throttling`, `ThrottlingException`,
/// `RequestLimitExceeded`…). Never retried: an answer that refuses the request (a bad MFA
/// code, a bad key, AccessDenied), or one that is not HTTP. Between attempts the SDK waits a
/// random time of up to `initial_backoff × 2^(n-1)` (exponential backoff with full jitter, at
/// most 20 s), and the whole lot stays within [`Deadlines::call`]: a hung endpoint is not
/// retried, the call deadline ends it.
///
/// Throttling is told apart from other failures: when the last attempt was throttled the call
/// fails with [`super::Error::Throttled`], when it got a 5xx with
/// [`Failure::ServerError`], so the operator hears "slow down" rather than "AWS is down".
///
/// A retried GetSessionToken sends the same MFA code again: if an earlier attempt did reach
/// AWS, the retry may be refused as a used code ([`super::Error::BadCode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retries {
    /// Attempts in all, the first one included (1: no retry).
    pub max_attempts: u32,
    /// The scale of the wait between attempts (before jitter).
    pub initial_backoff: Duration,
}

impl Default for Retries {
    /// [`DEFAULT_MAX_ATTEMPTS`] attempts, [`DEFAULT_INITIAL_BACKOFF`].
    fn default() -> Self {
        Self {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            initial_backoff: DEFAULT_INITIAL_BACKOFF,
        }
    }
}

/// Seconds with one decimal: `2.5 s`.
pub(crate) fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// What went wrong between this machine and AWS, for [`super::Error::Unreachable`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// The host name does not resolve.
    Dns,
    /// Nothing listens at the address (TCP RST to the connection attempt).
    Refused,
    /// No route to the host or network.
    NoRoute,
    /// No connection within the connect deadline (a firewall dropping packets, a dead host).
    ConnectTimeout {
        /// The deadline.
        limit: Duration,
    },
    /// Connected, but the TLS handshake failed (a TLS-intercepting proxy, a plain-HTTP port).
    Tls {
        /// The TLS library's reason, one line.
        detail: String,
    },
    /// The connection was reset or closed before the answer was complete.
    Reset,
    /// No complete answer within the call deadline: the endpoint accepted the connection and
    /// then said nothing, or too little.
    CallTimeout {
        /// The deadline.
        limit: Duration,
    },
    /// The endpoint answered with something that is not HTTP.
    NotHttp,
    /// AWS answered with an HTTP server error to the last attempt (after the retries).
    ServerError {
        /// The HTTP status (500, 503…).
        status: u16,
    },
    /// Another I/O failure.
    Io {
        /// The innermost error, one line.
        detail: String,
    },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dns => f.write_str("the host name does not resolve (DNS)"),
            Self::Refused => f.write_str("connection refused"),
            Self::NoRoute => f.write_str("no route to the host"),
            Self::ConnectTimeout { limit } => {
                write!(
                    f,
                    "no connection within the {} connect deadline",
                    secs(*limit)
                )
            }
            Self::Tls { detail } => write!(f, "the TLS handshake failed: {detail}"),
            Self::Reset => f.write_str("the connection was cut before the answer was complete"),
            Self::CallTimeout { limit } => {
                write!(f, "no answer within the {} call deadline", secs(*limit))
            }
            Self::NotHttp => f.write_str("the answer was not HTTP"),
            Self::ServerError { status } => write!(f, "AWS answered HTTP {status}"),
            Self::Io { detail } => write!(f, "network error: {detail}"),
        }
    }
}

impl Failure {
    /// True for the failures that happen before any request is written: no connection was
    /// made (DNS, refused, no route, connect timeout) or its TLS handshake failed (rustls
    /// writes no request data before the handshake completes; it sends no early data).
    pub fn before_request(&self) -> bool {
        matches!(
            self,
            Self::Dns
                | Self::Refused
                | Self::NoRoute
                | Self::ConnectTimeout { .. }
                | Self::Tls { .. }
        )
    }
}

/// The errors of `err`'s chain: after an `io::Error` its payload, else `source()`.
pub(crate) fn chain<'a>(
    err: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(err), |&e| match e.downcast_ref::<std::io::Error>() {
        Some(io) => io.get_ref().map(|inner| inner as &(dyn StdError + 'static)),
        None => e.source(),
    })
}

/// An error's text as one short printable line.
pub(crate) fn one_line(text: &str) -> String {
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.len() > 160 {
        let cut = (0..=160)
            .rev()
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0);
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// Sorts a failed exchange by the errors in its chain: the I/O error kinds, hyper's
/// classification, and the messages of hyper-util's connector ("dns error", "tcp connect
/// error", "client error (Connect)"), which it does not otherwise expose.
pub(crate) fn failure_of(err: &(dyn StdError + 'static), deadlines: &Deadlines) -> Failure {
    use std::io::ErrorKind as K;
    let errors: Vec<&(dyn StdError + 'static)> = chain(err).collect();
    let texts: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    let said = |m: &str| texts.iter().any(|t| t == m);
    let innermost = one_line(texts.last().map_or("", String::as_str));
    if said("dns error") {
        return Failure::Dns;
    }
    let tcp_connect = said("tcp connect error");
    for e in &errors {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            match io.kind() {
                K::ConnectionRefused => return Failure::Refused,
                K::HostUnreachable | K::NetworkUnreachable => return Failure::NoRoute,
                K::TimedOut if tcp_connect => {
                    return Failure::ConnectTimeout {
                        limit: deadlines.connect,
                    }
                }
                K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof
                    if !tcp_connect =>
                {
                    return Failure::Reset
                }
                _ => {}
            }
        }
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            if h.is_parse() || h.is_parse_status() || h.is_parse_too_large() {
                return Failure::NotHttp;
            }
            if h.is_incomplete_message() || h.is_closed() || h.is_canceled() {
                return Failure::Reset;
            }
        }
    }
    if texts.iter().any(|t| t.contains("connect timeout")) {
        return Failure::ConnectTimeout {
            limit: deadlines.connect,
        };
    }
    if said("client error (Connect)") && !tcp_connect {
        // A connect error that is neither DNS nor TCP: the https connector's TLS handshake.
        return Failure::Tls { detail: innermost };
    }
    Failure::Io { detail: innermost }
}

/// Per call, the attempts the SDK made: the connection each one used (the SDK's own
/// connection capture) and the host it was sent to. Registered as an interceptor.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tracker(Arc<Mutex<Seen>>);

#[derive(Debug, Default)]
struct Seen {
    /// One per attempt handed to the HTTP client; `None` when the SDK put no capture in.
    attempts: Vec<Option<CaptureSmithyConnection>>,
    /// `host[:port]` of the last request.
    host: Option<String>,
    /// How the last attempt that failed in the HTTP client failed (with the call's deadlines).
    last_failure: Option<Failure>,
    deadlines: Deadlines,
}

impl Tracker {
    /// A tracker for a call with these deadlines (they name the limits in its failures).
    pub(crate) fn new(deadlines: Deadlines) -> Self {
        Self(Arc::new(Mutex::new(Seen {
            deadlines,
            ..Seen::default()
        })))
    }

    /// How the last attempt that failed in the HTTP client failed: what a call deadline that
    /// cut the wait before the next attempt (backoff) interrupted.
    pub(crate) fn last_failure(&self) -> Option<Failure> {
        self.seen().last_failure.clone()
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Attempts handed to the HTTP client.
    pub(crate) fn attempts(&self) -> u32 {
        u32::try_from(self.seen().attempts.len()).unwrap_or(u32::MAX)
    }

    /// The host the last attempt went to.
    pub(crate) fn host(&self) -> Option<String> {
        self.seen().host.clone()
    }

    /// False only if no attempt ever got a connection: each one failed to connect, or the call
    /// ended while it was still connecting. An attempt whose connection is unknown counts as
    /// arrived.
    pub(crate) fn may_have_arrived(&self) -> bool {
        self.seen()
            .attempts
            .iter()
            .any(|a| a.as_ref().is_none_or(|c| c.get().is_some()))
    }
}

/// `host[:port]` of a URL (`https://host:port/path`), or the URL itself.
pub(crate) fn authority(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, h)| h)
        .to_owned()
}

impl Intercept for Tracker {
    fn name(&self) -> &'static str {
        "breakglass attempt tracker"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn StdError + Send + Sync>> {
        // The SDK's connection-poisoning interceptor has put this attempt's capture in (its
        // `modify_before_transmit` runs before any `read_before_transmit`); the HTTP client
        // fills it once it holds a connection, before it writes the request.
        let capture = cfg.load::<CaptureSmithyConnection>().cloned();
        let host = authority(context.request().uri());
        let mut seen = self.seen();
        seen.attempts.push(capture);
        seen.host = Some(host);
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn StdError + Send + Sync>> {
        if let Some(Err(e)) = context.output_or_error() {
            if let Some(c) = e.as_connector_error() {
                let mut seen = self.seen();
                let failure = if c.is_timeout() {
                    Failure::ConnectTimeout {
                        limit: seen.deadlines.connect,
                    }
                } else {
                    failure_of(c, &seen.deadlines)
                };
                seen.last_failure = Some(failure);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_and_lines() {
        assert_eq!(authority("http://127.0.0.1:4566"), "127.0.0.1:4566");
        assert_eq!(
            authority("https://sts.us-east-1.amazonaws.com/?Action=x"),
            "sts.us-east-1.amazonaws.com"
        );
        assert_eq!(authority("https://u:p@h:1/x"), "h:1");
        assert_eq!(one_line("a\n  b\tc"), "a b c");
        assert!(one_line(&"é".repeat(200)).ends_with('…'));
    }

    #[test]
    fn io_errors_are_sorted() {
        let d = Deadlines::default();
        let io = |k| std::io::Error::new(k, "x");
        assert_eq!(
            failure_of(&io(std::io::ErrorKind::ConnectionRefused), &d),
            Failure::Refused
        );
        assert_eq!(
            failure_of(&io(std::io::ErrorKind::ConnectionReset), &d),
            Failure::Reset
        );
        assert!(matches!(
            failure_of(&io(std::io::ErrorKind::Other), &d),
            Failure::Io { .. }
        ));
        assert!(Failure::Refused.before_request());
        assert!(!Failure::Reset.before_request());
        assert_eq!(
            Failure::ConnectTimeout {
                limit: Duration::from_secs(3)
            }
            .to_string(),
            "no connection within the 3.0 s connect deadline"
        );
    }
}
