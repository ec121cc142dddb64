//! AWS Organizations: the member accounts of the organization (the drill's list) and the
//! accounts under an organizational unit (the drill's per-OU roles).

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
    let client = client(endpoint, signer, &call).await?;
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

/// What sits directly under an organizational unit (or the root): its child OUs' ids and its
/// accounts' ids, every page of `ListOrganizationalUnitsForParent` and
/// `ListAccountsForParent`.
pub async fn children(
    endpoint: &Endpoint,
    signer: &Signer<'_>,
    parent: &str,
) -> Result<(Vec<String>, Vec<String>), Error> {
    let units = {
        let call = Call::start(
            "AWS Organizations",
            "ListOrganizationalUnitsForParent",
            endpoint,
        );
        let client = client(endpoint, signer, &call).await?;
        let mut ids = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = client
                .list_organizational_units_for_parent()
                .parent_id(parent)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| call.error(e))?;
            for u in out.organizational_units.unwrap_or_default() {
                ids.push(u.id.ok_or(Error::Incomplete {
                    action: "ListOrganizationalUnitsForParent",
                    what: "an OU's id",
                })?);
            }
            match out.next_token {
                // AWS allows 2,000 OUs in an organization.
                Some(t) if !t.is_empty() && ids.len() < 10_000 => token = Some(t),
                _ => break,
            }
        }
        ids
    };
    let call = Call::start("AWS Organizations", "ListAccountsForParent", endpoint);
    let client = client(endpoint, signer, &call).await?;
    let mut accounts = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let out = client
            .list_accounts_for_parent()
            .parent_id(parent)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| call.error(e))?;
        for a in out.accounts.unwrap_or_default() {
            accounts.push(a.id.ok_or(Error::Incomplete {
                action: "ListAccountsForParent",
                what: "an account's id",
            })?);
        }
        match out.next_token {
            Some(t) if !t.is_empty() && accounts.len() < 100_000 => token = Some(t),
            _ => break,
        }
    }
    Ok((units, accounts))
}

async fn client(
    endpoint: &Endpoint,
    signer: &Signer<'_>,
    call: &Call<'_>,
) -> Result<aws_sdk_organizations::Client, Error> {
    let (shared, url) = sdk_config(endpoint, signer, Service::Organizations).await?;
    let mut config = aws_sdk_organizations::config::Builder::from(&shared);
    config.set_endpoint_url(url);
    let config = config
        .interceptor(call.tracker())
        .interceptor(Guard)
        .build();
    Ok(aws_sdk_organizations::Client::from_conf(config))
}

/// Whether `id` is an organizational unit's id (`ou-` root part `-` 8 to 32 characters).
pub fn is_ou_id(id: &str) -> bool {
    let Some(rest) = id.strip_prefix("ou-") else {
        return false;
    };
    let Some((root, unit)) = rest.split_once('-') else {
        return false;
    };
    let ok = |s: &str, min, max| {
        (min..=max).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
    };
    ok(root, 4, 32) && ok(unit, 8, 32)
}

#[cfg(test)]
mod tests {
    use super::is_ou_id;

    #[test]
    fn ou_ids_have_organizations_shape() {
        for ok in [
            "ou-ab12-cdef3456",
            "ou-sbx0-gone0000",
            "ou-abcd-0123456789abcdef",
        ] {
            assert!(is_ou_id(ok), "{ok}");
        }
        for bad in [
            "",
            "ou-",
            "ou-ab1-cdef3456",
            "ou-ab12-cdef345",
            "ou-AB12-cdef3456",
            "ou-ab12cdef3456",
            "r-ab12",
            "111122223333",
            "ou-ab12-cdef3456-x",
        ] {
            assert!(!is_ou_id(bad), "{bad}");
        }
    }
}
