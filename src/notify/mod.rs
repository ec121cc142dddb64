//! Notices of break-glass events to the security team (`[notify]`): an SNS topic, published
//! with the fresh session, and HTTPS webhooks (a JSON body with a `text` field, which Slack-
//! and Teams-style incoming webhooks accept, and the same facts as fields).
//!
//! Each notice carries the audit chain head after the event's record, so that the log can be
//! checked later against what left the machine (`breakglass audit verify --expect-head`).
//! Whether a failed delivery stops anything is the caller's call (`required` channels); this
//! module delivers, within a deadline, and says what happened to each channel.

mod webhook;

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::audit::{self, rfc3339};
use crate::aws::{self, Endpoint, Signer};
use crate::config::{Notify, Profile};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Two holders named themselves and are about to call STS (webhooks only: there is no
    /// session yet to publish with).
    ActivationAttempt,
    /// STS granted the session.
    ActivationGranted,
    /// The activation failed (webhooks only).
    ActivationRefused,
    /// A role was assumed with the session.
    RoleAssumed,
    /// A console sign-in URL was made.
    ConsoleUrl,
    /// The session was wiped on request (`breakglass lock`, the agent stopped).
    Locked,
    /// The session reached its STS expiry and was wiped.
    Expired,
    /// The session went unused for the agent's idle timeout and was wiped.
    Idle,
    /// A key rotation ceremony ended.
    Rotation,
    /// A rekey ceremony (custodians, tokens) ended.
    Rekey,
    /// A drill ended.
    Drill,
}

impl Event {
    /// Its name in notices and audit records.
    pub fn name(self) -> &'static str {
        match self {
            Self::ActivationAttempt => "activation attempt",
            Self::ActivationGranted => "activation granted",
            Self::ActivationRefused => "activation refused",
            Self::RoleAssumed => "role assumed",
            Self::ConsoleUrl => "console URL made",
            Self::Locked => "locked",
            Self::Expired => "expired",
            Self::Idle => "idle wipe",
            Self::Rotation => "key rotation",
            Self::Rekey => "rekey",
            Self::Drill => "drill",
        }
    }
}

/// One notice: the facts of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// What happened.
    pub event: Event,
    /// When, Unix seconds.
    pub time: u64,
    /// The profile.
    pub profile: String,
    /// The IAM user's ARN, when known (empty before the vault is opened).
    pub user_arn: String,
    /// Who typed the passphrase (custodians joined by `+`).
    pub password_holder: String,
    /// Who touched the token.
    pub token_holder: String,
    /// The custodians present (empty for a vault with one passphrase).
    pub custodians: Vec<String>,
    /// Why.
    pub reason: String,
    /// The ticket, when one was given.
    pub ticket: Option<String>,
    /// The temporary access key id of the session (or role session) concerned.
    pub temporary_access_key_id: Option<String>,
    /// When that session ends, Unix seconds.
    pub expiration: Option<u64>,
    /// The event's subject (a role's ARN) or what went wrong (a refusal's cause).
    pub detail: Option<String>,
    /// The audit chain head after the event's record.
    pub audit_head: String,
}

/// This machine's name (`/proc/sys/kernel/hostname`; empty when it cannot be read).
pub fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

/// Escapes what Slack's and Teams' message formats would read as markup or mentions
/// (`<!channel>`, `<@U…>`, links): names and reasons are the holders' typing, not markup.
fn plain(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Notice {
    /// A notice of `event` in `profile`, at `time`, after the record whose chain head is
    /// `audit_head`; the other facts empty.
    pub fn new(event: Event, time: u64, profile: &Profile, audit_head: String) -> Self {
        Self {
            event,
            time,
            profile: profile.name.clone(),
            user_arn: String::new(),
            password_holder: String::new(),
            token_holder: String::new(),
            custodians: Vec::new(),
            reason: String::new(),
            ticket: None,
            temporary_access_key_id: None,
            expiration: None,
            detail: None,
            audit_head,
        }
    }

    /// The same, naming the two holders.
    pub fn by(mut self, (password_holder, token_holder): (&str, &str)) -> Self {
        password_holder.clone_into(&mut self.password_holder);
        token_holder.clone_into(&mut self.token_holder);
        self
    }

    /// The one-paragraph message: what happened, to what, by whom, why, and the head.
    pub fn text(&self) -> String {
        let mut s = format!(
            "BREAK-GLASS {}: profile {}",
            self.event.name(),
            plain(&self.profile)
        );
        if !self.user_arn.is_empty() {
            s += &format!(" ({})", plain(&self.user_arn));
        }
        if !self.password_holder.is_empty() || !self.token_holder.is_empty() {
            s += &format!(
                ", by {} (passphrase) and {} (token)",
                plain(&self.password_holder),
                plain(&self.token_holder)
            );
        }
        s += &format!(", on host {}", plain(&host()));
        s += &format!(" at {}.", rfc3339(self.time));
        if let Some(d) = &self.detail {
            s += &format!(" {}.", plain(d));
        }
        if !self.reason.is_empty() {
            s += &format!(" Reason: {}.", plain(&self.reason));
        }
        if let Some(t) = &self.ticket {
            s += &format!(" Ticket: {}.", plain(t));
        }
        if let Some(k) = &self.temporary_access_key_id {
            s += &format!(" Temporary key {k}");
            if let Some(e) = self.expiration {
                s += &format!(", valid until {}", rfc3339(e));
            }
            s += ".";
        }
        s += &format!(
            " Audit head {} (check: breakglass audit verify --expect-head {}).",
            self.audit_head, self.audit_head
        );
        s
    }

    /// The SNS subject: at most 100 printable ASCII characters (SNS's rule).
    pub fn subject(&self) -> String {
        let s = format!("breakglass: {} ({})", self.event.name(), self.profile);
        let ascii: String = s
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() || c == ' ' {
                    c
                } else {
                    '?'
                }
            })
            .collect();
        ascii.chars().take(100).collect()
    }

    /// The JSON body: `text` for chat webhooks, and every fact as a field under `breakglass`.
    pub fn json(&self) -> Value {
        json!({
            "text": self.text(),
            "breakglass": {
                "event": self.event.name(),
                "time": rfc3339(self.time),
                "profile": self.profile,
                "user_arn": self.user_arn,
                "password_holder": self.password_holder,
                "token_holder": self.token_holder,
                "custodians": self.custodians,
                "reason": self.reason,
                "ticket": self.ticket,
                "host": host(),
                "version": env!("CARGO_PKG_VERSION"),
                "temporary_access_key_id": self.temporary_access_key_id,
                "expiration": self.expiration.map(rfc3339),
                "detail": self.detail,
                "audit_head": self.audit_head,
            }
        })
    }
}

/// A channel's name in messages and the audit log: `sns:ARN`, `webhook:NAME`.
pub fn channels(notify: &Notify) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    if let Some(s) = &notify.sns {
        out.push((format!("sns:{}", s.topic_arn), s.required));
    }
    for w in &notify.webhooks {
        out.push((format!("webhook:{}", w.name), w.required));
    }
    out
}

/// What one channel did with a notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// `sns:ARN` or `webhook:NAME`.
    pub channel: String,
    /// The channel is `required = true`.
    pub required: bool,
    /// Delivered, or why not (one line, naming the setting or permission involved).
    pub result: Result<(), String>,
}

impl Delivery {
    /// A required channel that failed.
    pub fn blocks(&self) -> bool {
        self.required && self.result.is_err()
    }
}

/// The session a notice is published with (SNS needs one; webhooks do not).
pub struct With<'a> {
    /// The session's credentials.
    pub signer: Signer<'a>,
    /// The clock seam of the SDK's signing ([`Endpoint::signing_ahead_secs`]).
    pub signing_ahead_secs: u64,
}

/// Delivers `notice` to every channel of the profile that can take it: the webhooks always,
/// the SNS topic when a session is given. Each delivery has `[notify] timeout_secs`, its
/// retries included; they run side by side.
pub async fn deliver(profile: &Profile, notice: &Notice, with: Option<&With<'_>>) -> Vec<Delivery> {
    let notify = &profile.notify;
    let deadline = Duration::from_secs(notify.timeout_secs);
    let body = notice.json().to_string();
    let hooks: Vec<_> = notify
        .webhooks
        .iter()
        .cloned()
        .map(|hook| {
            let body = body.clone();
            tokio::task::spawn_blocking(move || {
                let result = webhook::post(&hook, &body, deadline);
                Delivery {
                    channel: format!("webhook:{}", hook.name),
                    required: hook.required,
                    result,
                }
            })
        })
        .collect();
    let mut out = Vec::new();
    if let (Some(sns), Some(with)) = (&notify.sns, with) {
        let mut endpoint = Endpoint::new(sns.region.clone(), sns.endpoint.clone());
        endpoint.deadlines = aws::Deadlines {
            connect: deadline.min(Duration::from_secs(profile.connect_timeout_secs)),
            call: deadline,
        };
        endpoint.signing_ahead_secs = with.signing_ahead_secs;
        let result = aws::sns::publish(
            &endpoint,
            &with.signer,
            &sns.topic_arn,
            &notice.subject(),
            &body,
        )
        .await
        .map(drop)
        .map_err(|e| sns_failure(&e, &sns.topic_arn));
        out.push(Delivery {
            channel: format!("sns:{}", sns.topic_arn),
            required: sns.required,
            result,
        });
    }
    for (hook, task) in notify.webhooks.iter().zip(hooks) {
        out.push(task.await.unwrap_or_else(|e| Delivery {
            channel: format!("webhook:{}", hook.name),
            required: hook.required,
            result: Err(format!("the delivery stopped: {e}")),
        }));
    }
    out
}

/// Delivers `notice` (see [`deliver`]) and writes one `notice` record per channel into the
/// audit log at `log`, at the notice's time; each failure is said through `warn`. Returns the
/// required channels that failed, each with why. A profile with no channel: nothing happens.
pub async fn announce(
    profile: &Profile,
    log: &Path,
    notice: &Notice,
    with: Option<&With<'_>>,
    warn: &mut dyn FnMut(&str),
) -> Vec<(String, String)> {
    if profile.notify.is_empty() {
        return Vec::new();
    }
    let deliveries = deliver(profile, notice, with).await;
    record(profile, log, notice, &deliveries, warn)
}

/// [`announce`] from code that runs no async runtime (the agent's threads): a runtime of its
/// own for the deliveries.
pub fn announce_blocking(
    profile: &Profile,
    log: &Path,
    notice: &Notice,
    warn: &mut dyn FnMut(&str),
) -> Vec<(String, String)> {
    if profile.notify.is_empty() {
        return Vec::new();
    }
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(announce(profile, log, notice, None, warn)),
        Err(e) => {
            let why = format!("no runtime to deliver notices: {e}");
            warn(&why);
            channels(&profile.notify)
                .into_iter()
                .filter(|(_, required)| *required)
                .map(|(c, _)| (c, why.clone()))
                .collect()
        }
    }
}

/// The `notice` records of `deliveries`; the warnings; the required failures.
fn record(
    profile: &Profile,
    log: &Path,
    notice: &Notice,
    deliveries: &[Delivery],
    warn: &mut dyn FnMut(&str),
) -> Vec<(String, String)> {
    let event = notice.event.name();
    let mut blocking = Vec::new();
    for d in deliveries {
        let entry = audit::Entry {
            time: notice.time,
            profile: &profile.name,
            record: audit::Record::Notice {
                event,
                channel: d.channel.clone(),
                required: d.required,
                audit_head: notice.audit_head.clone(),
            },
            outcome: match &d.result {
                Ok(()) => audit::Outcome::Success,
                Err(e) => audit::Outcome::Failure { reason: e.clone() },
            },
        };
        if let Err(e) = audit::append(log, &entry) {
            warn(&format!(
                "The delivery of the {event} notice to {} could not be written to the audit log: {e}",
                d.channel
            ));
        }
        match &d.result {
            Ok(()) => {}
            Err(e) if d.required => {
                warn(&format!(
                    "The {event} notice could not be delivered to {} (required): {e}",
                    d.channel
                ));
                blocking.push((d.channel.clone(), e.clone()));
            }
            Err(e) => warn(&format!(
                "WARNING: the {event} notice could not be delivered to {}: {e}. It is not required, so this goes on; tell the security team yourself.",
                d.channel
            )),
        }
    }
    blocking
}

/// An SNS failure, with what to check.
fn sns_failure(e: &aws::Error, topic: &str) -> String {
    match e {
        aws::Error::Denied { code, message, .. } if code == "NotFound" => {
            format!("SNS has no topic {topic} ({message}); check [notify.sns] topic and its region")
        }
        aws::Error::Denied { code, message, .. }
            if code.contains("AuthorizationError") || code.contains("AccessDenied") =>
        {
            format!(
                "SNS refused Publish to {topic} ({code}: {message}); the break-glass user needs sns:Publish on it, and a topic in another account must allow the user in its topic policy"
            )
        }
        other => format!("{other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice() -> Notice {
        Notice {
            event: Event::ActivationGranted,
            time: 1_700_000_000,
            profile: "prod".into(),
            user_arn: "arn:aws:iam::123456789012:user/bg".into(),
            password_holder: "Alice <!channel>".into(),
            token_holder: "Bob".into(),
            custodians: Vec::new(),
            reason: "IdP down & <@U123>".into(),
            ticket: Some("INC123456".into()),
            temporary_access_key_id: Some("ASIAEXAMPLE".into()),
            expiration: Some(1_700_003_600),
            detail: None,
            audit_head: "ab".repeat(32),
        }
    }

    #[test]
    fn the_text_names_everything_and_escapes_markup() {
        let t = notice().text();
        for part in [
            "BREAK-GLASS activation granted: profile prod",
            "arn:aws:iam::123456789012:user/bg",
            "Alice &lt;!channel&gt; (passphrase) and Bob (token)",
            "Reason: IdP down &amp; &lt;@U123&gt;.",
            "Ticket: INC123456.",
            "Temporary key ASIAEXAMPLE, valid until 2023-11-14T23:13:20Z.",
            "2023-11-14T22:13:20Z",
        ] {
            assert!(t.contains(part), "{part:?} not in {t}");
        }
        assert!(t.contains(&"ab".repeat(32)));
        assert!(!t.contains('<'), "{t}");
    }

    #[test]
    fn the_json_has_the_facts_as_typed() {
        let v = notice().json();
        assert_eq!(v["breakglass"]["password_holder"], "Alice <!channel>");
        assert_eq!(v["breakglass"]["expiration"], "2023-11-14T23:13:20Z");
        assert_eq!(v["breakglass"]["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(v["breakglass"]["audit_head"], "ab".repeat(32));
        assert!(v["text"].as_str().unwrap().starts_with("BREAK-GLASS"));
    }

    #[test]
    fn the_subject_is_short_ascii() {
        let mut n = notice();
        n.profile = "é".repeat(200);
        let s = n.subject();
        assert!(s.len() <= 100 && s.is_ascii(), "{s}");
    }
}
