//! Amazon SNS: Publish an activation notice to the security team's topic, signed with the
//! fresh session (the topic may be in another account; its policy must allow the user).

use super::endpoint::Guard;
use super::{sdk_config, Call, Endpoint, Error, Service, Signer};

/// Publish `message` (with `subject`, at most 100 printable ASCII characters) to
/// `topic_arn`; returns the MessageId SNS gave it.
pub async fn publish(
    endpoint: &Endpoint,
    signer: &Signer<'_>,
    topic_arn: &str,
    subject: &str,
    message: &str,
) -> Result<String, Error> {
    let call = Call::start("Amazon SNS", "Publish", endpoint);
    let (shared, url) = sdk_config(endpoint, signer, Service::Sns).await?;
    let mut config = aws_sdk_sns::config::Builder::from(&shared);
    config.set_endpoint_url(url);
    let config = config
        .interceptor(call.tracker())
        .interceptor(Guard)
        .build();
    let client = aws_sdk_sns::Client::from_conf(config);
    let out = client
        .publish()
        .topic_arn(topic_arn)
        .subject(subject)
        .message(message)
        .send()
        .await
        .map_err(|e| call.error(e))?;
    match out.message_id {
        Some(id) if !id.is_empty() => Ok(id),
        _ => Err(Error::Incomplete {
            action: "Publish",
            what: "a MessageId",
        }),
    }
}
