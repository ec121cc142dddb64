//! Amazon EventBridge: whether a rule is there and enabled (the drill's optional check that
//! each account forwards break-glass activity to the alert topic).

use super::endpoint::Guard;
use super::{sdk_config, Call, Endpoint, Error, Service, Signer};

/// A rule as `DescribeRule` describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// No rule of that name on the default event bus.
    Missing,
    /// It exists; `enabled` says whether it fires.
    Present {
        /// `State` is `ENABLED`.
        enabled: bool,
    },
}

/// DescribeRule `name` on the default event bus of the signing credentials' account.
pub async fn describe_rule(
    endpoint: &Endpoint,
    signer: &Signer<'_>,
    name: &str,
) -> Result<Rule, Error> {
    let call = Call::start("Amazon EventBridge", "DescribeRule", endpoint);
    let (shared, url) = sdk_config(endpoint, signer, Service::Events).await?;
    let mut config = aws_sdk_eventbridge::config::Builder::from(&shared);
    config.set_endpoint_url(url);
    let config = config
        .interceptor(call.tracker())
        .interceptor(Guard)
        .build();
    let client = aws_sdk_eventbridge::Client::from_conf(config);
    match client.describe_rule().name(name).send().await {
        Ok(out) => Ok(Rule::Present {
            enabled: out
                .state
                .is_some_and(|s| s == aws_sdk_eventbridge::types::RuleState::Enabled),
        }),
        Err(e) => match call.error(e) {
            Error::Denied { code, .. } if code == "ResourceNotFoundException" => Ok(Rule::Missing),
            other => Err(other),
        },
    }
}
