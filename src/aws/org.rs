//! AWS Organizations: the member accounts of the organization (the drill's list).

use super::endpoint::Guard;
use super::{sdk_config, Call, Endpoint, Error, Service, Signer};

/// A member account as `ListAccounts` describes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Member {
    /// The 12-digit account id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// `ACTIVE`, `SUSPENDED`, `PENDING_CLOSURE`.
    pub status: String,
}

impl Member {
    /// Whether the account can be tried (not suspended or closing).
    pub fn active(&self) -> bool {
        self.status == "ACTIVE"
    }
}

/// ListAccounts, every page (the organization's management account or a delegated
/// administrator only).
pub async fn list_accounts(endpoint: &Endpoint, signer: &Signer<'_>) -> Result<Vec<Member>, Error> {
    let call = Call::start("AWS Organizations", "ListAccounts", endpoint);
    let (shared, url) = sdk_config(endpoint, signer, Service::Organizations).await?;
    let mut config = aws_sdk_organizations::config::Builder::from(&shared);
    config.set_endpoint_url(url);
    let config = config
        .interceptor(call.tracker())
        .interceptor(Guard)
        .build();
    let client = aws_sdk_organizations::Client::from_conf(config);
    let mut members = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let out = client
            .list_accounts()
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| call.error(e))?;
        for a in out.accounts.unwrap_or_default() {
            let id = a.id.ok_or(Error::Incomplete {
                action: "ListAccounts",
                what: "an account's id",
            })?;
            members.push(Member {
                name: a.name.unwrap_or_default(),
                status: a
                    .status
                    .map_or_else(|| "UNKNOWN".to_owned(), |s| s.as_str().to_owned()),
                id,
            });
        }
        match out.next_token {
            // A server that hands back the same token forever would loop: 100,000 accounts
            // is well past AWS's largest organizations.
            Some(t) if !t.is_empty() && members.len() < 100_000 => token = Some(t),
            _ => break,
        }
    }
    Ok(members)
}
