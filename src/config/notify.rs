//! `[notify]`: where activation notices go (an SNS topic, HTTPS webhooks), and the ticket a
//! profile may demand (`require_ticket`, `ticket_pattern`).
//!
//! ```toml
//! [notify]                                    # every profile's, unless it has its own
//! timeout_secs = 5                            # per delivery, retries included, 1..=60
//! [notify.sns]
//! topic = "arn:aws:sns:us-east-1:111122223333:breakglass-alerts"  # may be another account's
//! required = true                             # no notice delivered: no credentials
//! endpoint = "https://sns.us-east-1.amazonaws.com"  # else AWS_ENDPOINT_URL_SNS, the region's
//! [[notify.webhooks]]
//! name = "slack"                              # in messages and the audit log (default: host)
//! url = "https://hooks.slack.com/services/T000/B000/XXXX"
//! required = false                            # a failure is a warning
//! ca_file = "/etc/ssl/certs/internal-ca.pem"  # extra roots for an internal server
//!
//! [profiles.prod]
//! require_ticket = true                       # unlock and the ceremonies need --ticket
//! ticket_pattern = "INC[0-9]{6}"              # the whole ticket must match
//! [profiles.prod.notify]                      # replaces [notify] for this profile
//! ```

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

/// Allowed `timeout_secs` of `[notify]`, seconds.
pub const NOTIFY_TIMEOUT_SECS: std::ops::RangeInclusive<u64> = 1..=60;
/// A delivery's deadline when `[notify]` sets none, seconds.
pub const DEFAULT_NOTIFY_TIMEOUT_SECS: u64 = 5;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotify {
    timeout_secs: Option<Spanned<u64>>,
    sns: Option<Spanned<RawSns>>,
    #[serde(default)]
    webhooks: Vec<Spanned<RawWebhook>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSns {
    topic: Spanned<String>,
    #[serde(default)]
    required: bool,
    endpoint: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    url: Spanned<String>,
    name: Option<Spanned<String>>,
    #[serde(default)]
    required: bool,
    ca_file: Option<PathBuf>,
}

/// Where a profile's notices go. Empty (the default): nowhere but the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    /// The SNS topic, published to with the fresh session (`sns:Publish`).
    pub sns: Option<SnsChannel>,
    /// HTTPS webhooks (Slack- and Teams-style incoming webhooks), posted a JSON body.
    pub webhooks: Vec<Webhook>,
    /// Each delivery's deadline, retries included.
    pub timeout_secs: u64,
}

impl Default for Notify {
    fn default() -> Self {
        Self {
            sns: None,
            webhooks: Vec::new(),
            timeout_secs: DEFAULT_NOTIFY_TIMEOUT_SECS,
        }
    }
}

impl Notify {
    /// No channel at all.
    pub fn is_empty(&self) -> bool {
        self.sns.is_none() && self.webhooks.is_empty()
    }
}

/// An SNS topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnsChannel {
    /// The topic's ARN.
    pub topic_arn: String,
    /// The topic's region (from its ARN): Publish goes there.
    pub region: String,
    /// An explicit endpoint URL; `None`: `AWS_ENDPOINT_URL_SNS`, `AWS_ENDPOINT_URL`, the region's.
    pub endpoint: Option<String>,
    /// A notice that cannot be published withholds the credentials.
    pub required: bool,
}

/// An HTTPS webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// Its name in messages and the audit log (default: the URL's host).
    pub name: String,
    /// Where the notice is posted: `https://…` (`http://` only to this machine).
    pub url: String,
    /// A notice that cannot be posted withholds the credentials.
    pub required: bool,
    /// Extra trusted roots (PEM) besides the system's, for an internal server.
    pub ca_file: Option<PathBuf>,
}

/// What a profile asks of a ticket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TicketPolicy {
    /// An activation (or a ceremony) needs a ticket.
    pub required: bool,
    /// A pattern (regular expression) the whole ticket must match.
    pub pattern: Option<String>,
}

/// A ticket the profile does not accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BadTicket {
    /// None given, and the profile has `require_ticket = true`.
    #[error("profile {profile:?} requires a ticket (require_ticket = true) and none was given")]
    Missing {
        /// The profile.
        profile: String,
    },
    /// One that does not match `ticket_pattern`.
    #[error("ticket {ticket:?} does not match profile {profile:?}'s ticket_pattern {pattern:?}")]
    NoMatch {
        /// The profile.
        profile: String,
        /// The ticket as given.
        ticket: String,
        /// The pattern.
        pattern: String,
    },
    /// Empty, longer than 128 characters, or with control characters.
    #[error("ticket {ticket:?} must be 1-128 printable characters")]
    Malformed {
        /// The ticket as given.
        ticket: String,
    },
}

impl TicketPolicy {
    /// Checks `ticket` (trimmed) against the policy; returns it trimmed.
    pub fn check(&self, profile: &str, ticket: Option<&str>) -> Result<Option<String>, BadTicket> {
        let ticket = ticket.map(str::trim).filter(|t| !t.is_empty());
        let Some(ticket) = ticket else {
            return if self.required {
                Err(BadTicket::Missing {
                    profile: profile.to_owned(),
                })
            } else {
                Ok(None)
            };
        };
        if ticket.chars().count() > 128 || ticket.chars().any(char::is_control) {
            return Err(BadTicket::Malformed {
                ticket: ticket.escape_debug().to_string(),
            });
        }
        if let Some(pattern) = &self.pattern {
            // Checked when the config was read: it compiles.
            let matches = full_match(pattern).is_ok_and(|re| re.is_match(ticket));
            if !matches {
                return Err(BadTicket::NoMatch {
                    profile: profile.to_owned(),
                    ticket: ticket.to_owned(),
                    pattern: pattern.clone(),
                });
            }
        }
        Ok(Some(ticket.to_owned()))
    }
}

/// `pattern` anchored at both ends.
fn full_match(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(1 << 20)
        .build()
}

/// A `ticket_pattern`: a regular expression that compiles.
pub(super) fn check_ticket_pattern(pattern: &str) -> Result<(), String> {
    full_match(pattern).map(|_| ()).map_err(|e| {
        format!(
            "ticket_pattern {pattern:?} is not a valid regular expression: {}",
            e.to_string().lines().last().unwrap_or("")
        )
    })
}

/// An SNS topic ARN, `arn:PARTITION:sns:REGION:ACCOUNT:NAME`: its region.
pub fn topic_region(arn: &str) -> Option<&str> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [a, partition, service, region, account, name] = parts[..] else {
        return None;
    };
    let name_ok = {
        let base = name.strip_suffix(".fifo").unwrap_or(name);
        (1..=256).contains(&base.len())
            && base
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let ok = a == "arn"
        && partition.starts_with("aws")
        && service == "sns"
        && !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && super::is_account_id(account)
        && name_ok;
    ok.then_some(region)
}

/// The host of a URL, for a webhook's default name.
fn url_host(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, h)| h)
        .to_owned()
}

/// `[notify]` checked; errors carry the offset of the value at fault.
pub(super) fn notify(raw: RawNotify) -> Result<Notify, (usize, String)> {
    let mut out = Notify::default();
    if let Some(t) = raw.timeout_secs {
        if !NOTIFY_TIMEOUT_SECS.contains(t.get_ref()) {
            return Err((
                t.span().start,
                format!(
                    "timeout_secs {} is out of range: use {} to {} seconds",
                    t.get_ref(),
                    NOTIFY_TIMEOUT_SECS.start(),
                    NOTIFY_TIMEOUT_SECS.end()
                ),
            ));
        }
        out.timeout_secs = *t.get_ref();
    }
    if let Some(sns) = raw.sns {
        let sns = sns.into_inner();
        let region = topic_region(sns.topic.get_ref()).ok_or_else(|| {
            (
                sns.topic.span().start,
                format!(
                    "topic {:?} is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)",
                    sns.topic.get_ref()
                ),
            )
        })?;
        let region = region.to_owned();
        if let Some(e) = &sns.endpoint {
            super::check_endpoint(e.get_ref()).map_err(|m| (e.span().start, m.to_string()))?;
        }
        out.sns = Some(SnsChannel {
            topic_arn: sns.topic.into_inner(),
            region,
            endpoint: sns.endpoint.map(Spanned::into_inner),
            required: sns.required,
        });
    }
    for hook in raw.webhooks {
        let at = hook.span().start;
        let hook = hook.into_inner();
        let url = hook.url.get_ref();
        if !crate::aws::endpoint::allowed(url) {
            return Err((
                hook.url.span().start,
                format!("webhook url {url:?} must be https:// (http:// only to 127.0.0.1, [::1] or localhost)"),
            ));
        }
        let name = match hook.name {
            Some(n) => {
                let ok = (1..=64).contains(&n.get_ref().chars().count())
                    && !n.get_ref().chars().any(char::is_control);
                if !ok {
                    return Err((
                        n.span().start,
                        format!(
                            "webhook name {:?} must be 1-64 printable characters",
                            n.get_ref()
                        ),
                    ));
                }
                n.into_inner()
            }
            None => url_host(url),
        };
        if out.webhooks.iter().any(|w| w.name == name) {
            return Err((
                at,
                format!("two webhooks are named {name:?}: give each its own name = \"…\""),
            ));
        }
        out.webhooks.push(Webhook {
            name,
            url: hook.url.into_inner(),
            required: hook.required,
            ca_file: hook.ca_file,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_arns() {
        assert_eq!(
            topic_region("arn:aws:sns:eu-west-1:111122223333:alerts"),
            Some("eu-west-1")
        );
        assert_eq!(
            topic_region("arn:aws:sns:us-east-1:111122223333:a.fifo"),
            Some("us-east-1")
        );
        for bad in [
            "arn:aws:sqs:us-east-1:111122223333:alerts",
            "arn:aws:sns:us-east-1:1111:alerts",
            "arn:aws:sns::111122223333:alerts",
            "arn:aws:sns:us-east-1:111122223333:",
            "arn:aws:sns:us-east-1:111122223333:a/b",
        ] {
            assert_eq!(topic_region(bad), None, "{bad}");
        }
    }

    #[test]
    fn tickets() {
        let p = TicketPolicy {
            required: true,
            pattern: Some("INC[0-9]{6}".into()),
        };
        assert_eq!(
            p.check("prod", Some(" INC123456 ")),
            Ok(Some("INC123456".into()))
        );
        assert!(matches!(
            p.check("prod", None),
            Err(BadTicket::Missing { .. })
        ));
        assert!(matches!(
            p.check("prod", Some("  ")),
            Err(BadTicket::Missing { .. })
        ));
        // The whole ticket must match, not a part of it.
        assert!(matches!(
            p.check("prod", Some("xINC123456")),
            Err(BadTicket::NoMatch { .. })
        ));
        assert!(matches!(
            p.check("prod", Some("INC1234567")),
            Err(BadTicket::NoMatch { .. })
        ));
        assert!(matches!(
            p.check("prod", Some("INC\n12")),
            Err(BadTicket::Malformed { .. })
        ));
        let optional = TicketPolicy::default();
        assert_eq!(optional.check("dev", None), Ok(None));
        assert_eq!(optional.check("dev", Some("any")), Ok(Some("any".into())));
        assert!(check_ticket_pattern("INC[").is_err());
        assert!(check_ticket_pattern("(a|b)+").is_ok());
    }
}
