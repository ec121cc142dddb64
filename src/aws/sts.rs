//! STS: GetSessionToken with MFA, AssumeRole from that session, GetCallerIdentity; and the
//! names a role session carries (RoleSessionName, SourceIdentity).

use secrecy::SecretString;

use super::endpoint::Guard;
use super::{
    sdk_config, AnswerProblem, Call, Endpoint, Error, Service, Signer, EXPIRATION_SKEW_SECS,
};

/// Temporary credentials. The secret parts are `SecretString`s; no `Debug`.
pub struct Session {
    /// The temporary access key id (`ASIA…`).
    pub access_key_id: String,
    /// Its secret access key.
    pub secret_access_key: SecretString,
    /// The session token, sent with every call signed with this session.
    pub session_token: SecretString,
    /// Unix seconds.
    pub expiration: u64,
}

/// Who a set of credentials is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The 12-digit AWS account id.
    pub account: String,
    /// The caller's ARN (`arn:aws:iam::ACCOUNT:user/NAME` for an IAM user).
    pub arn: String,
    /// The caller's unique id (`AIDA…` for an IAM user).
    pub user_id: String,
}

/// AWS's default duration of a role session (AssumeRole without DurationSeconds), seconds.
const ROLE_DEFAULT_DURATION_SECS: u64 = 3600;

async fn client(
    endpoint: &Endpoint,
    signer: &Signer<'_>,
    call: &Call<'_>,
) -> Result<aws_sdk_sts::Client, Error> {
    let (shared, url) = sdk_config(endpoint, signer, Service::Sts).await?;
    let mut config = aws_sdk_sts::config::Builder::from(&shared);
    config.set_endpoint_url(url);
    let config = config
        .interceptor(call.tracker())
        .interceptor(Guard)
        .build();
    Ok(aws_sdk_sts::Client::from_conf(config))
}

/// GetSessionToken with the MFA device's serial and a code. `now` (Unix seconds, this
/// machine's clock) checks the answer: see [`session`]; an unusable answer is
/// [`Error::BadAnswer`]. A network failure is [`Error::Unreachable`], whose
/// `may_have_arrived` says whether the code may have been spent.
pub async fn get_session_token(
    endpoint: &Endpoint,
    signer: &Signer<'_>,
    serial: &str,
    code: &str,
    duration_secs: u64,
    now: u64,
) -> Result<Session, Error> {
    let call = Call::start("AWS STS", "GetSessionToken", endpoint);
    let out = client(endpoint, signer, &call)
        .await?
        .get_session_token()
        .serial_number(serial)
        .token_code(code)
        .duration_seconds(i32::try_from(duration_secs).unwrap_or(i32::MAX))
        .send()
        .await
        .map_err(|e| call.error(e))?;
    session("GetSessionToken", out.credentials, now, duration_secs)
}

/// Whether `id` looks like an AWS access key id: `ASIA` or `AKIA`, then `[A-Z0-9]`, 16-128
/// characters in all.
fn check_key_id(id: &str) -> Result<(), AnswerProblem> {
    if id.is_empty() {
        return Err(AnswerProblem::NoAccessKeyId);
    }
    let well_formed = (16..=128).contains(&id.len())
        && (id.starts_with("ASIA") || id.starts_with("AKIA"))
        && id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    if well_formed {
        return Ok(());
    }
    Err(AnswerProblem::BadAccessKeyId {
        len: id.chars().count(),
        control: id
            .chars()
            .any(|c| c.is_control() || !(c.is_ascii_graphic() || c == ' ')),
    })
}

/// Checks the credentials of an STS answer before anything keeps them: all fields present
/// (the SDK reads missing ones as empty, and a missing expiration as the epoch), a well-formed
/// access key id, an expiration after `now` and no later than `now + duration_secs` (plus
/// [`EXPIRATION_SKEW_SECS`]). A refused answer is [`Error::BadAnswer`] naming the problem
/// without the secret values; the credentials are dropped (and so wiped).
pub(crate) fn session(
    action: &'static str,
    c: Option<aws_sdk_sts::types::Credentials>,
    now: u64,
    duration_secs: u64,
) -> Result<Session, Error> {
    let bad = |problem| Error::BadAnswer { action, problem };
    let c = c.ok_or(bad(AnswerProblem::NoCredentials))?;
    let s = Session {
        access_key_id: c.access_key_id,
        secret_access_key: SecretString::from(c.secret_access_key),
        session_token: SecretString::from(c.session_token),
        expiration: u64::try_from(c.expiration.secs()).unwrap_or(0),
    };
    check_key_id(&s.access_key_id).map_err(bad)?;
    use secrecy::ExposeSecret;
    if s.secret_access_key.expose_secret().is_empty() {
        return Err(bad(AnswerProblem::EmptySecret));
    }
    if s.session_token.expose_secret().is_empty() {
        return Err(bad(AnswerProblem::EmptyToken));
    }
    if s.expiration == 0 {
        return Err(bad(AnswerProblem::NoExpiration));
    }
    if s.expiration <= now {
        return Err(bad(AnswerProblem::Expired {
            expiration: s.expiration,
            now,
        }));
    }
    let limit = now
        .saturating_add(duration_secs)
        .saturating_add(EXPIRATION_SKEW_SECS);
    if s.expiration > limit {
        return Err(bad(AnswerProblem::TooLate {
            expiration: s.expiration,
            limit,
        }));
    }
    Ok(s)
}

/// What to ask AssumeRole for.
#[derive(Debug, Clone, Copy)]
pub struct AssumeRole<'a> {
    /// The role to assume.
    pub role_arn: &'a str,
    /// 2-64 characters of `[\w+=,.@-]`: see [`role_session_name`].
    pub session_name: &'a str,
    /// Kept by AWS on the session and every session chained from it (CloudTrail shows it);
    /// see [`source_identity`]. Empty: none is set.
    pub source_identity: &'a str,
    /// 900 up to the role's `MaxSessionDuration` (at most 3600 when chained from a role).
    /// `None` sends no DurationSeconds (AWS's default, 1 h). The console needs that: AWS's
    /// federation endpoint fails for role sessions made with temporary credentials *and*
    /// DurationSeconds.
    pub duration_secs: Option<u64>,
}

/// Temporary credentials of a role, and the ARN they act as
/// (`arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`). No `Debug`: the session is secret.
pub struct RoleSession {
    /// The role's temporary credentials.
    pub session: Session,
    /// The assumed-role ARN (`arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`).
    pub assumed_role_arn: String,
}

/// AssumeRole, signed with `signer`: for break-glass use, the MFA session from
/// [`get_session_token`] (its session token included), so that a role whose trust policy
/// requires MFA admits it. A refusal of the role (unknown role, trust policy, MFA) is
/// [`Error::RoleDenied`]; an expired base session is [`Error::Expired`]. `now` checks the
/// answer as for [`get_session_token`].
pub async fn assume_role(
    endpoint: &Endpoint,
    signer: &Signer<'_>,
    req: &AssumeRole<'_>,
    now: u64,
) -> Result<RoleSession, Error> {
    let tracked = Call::start("AWS STS", "AssumeRole", endpoint);
    let mut call = client(endpoint, signer, &tracked)
        .await?
        .assume_role()
        .role_arn(req.role_arn)
        .role_session_name(req.session_name)
        .set_duration_seconds(
            req.duration_secs
                .map(|d| i32::try_from(d).unwrap_or(i32::MAX)),
        );
    if !req.source_identity.is_empty() {
        call = call.source_identity(req.source_identity);
    }
    let out = call.send().await.map_err(|e| match tracked.error(e) {
        Error::Denied { code, message, .. } if code == "AccessDenied" => Error::RoleDenied {
            role_arn: req.role_arn.to_owned(),
            message,
        },
        other => other,
    })?;
    let duration = req.duration_secs.unwrap_or(ROLE_DEFAULT_DURATION_SECS);
    let session = session("AssumeRole", out.credentials, now, duration)?;
    let user = out.assumed_role_user.ok_or(Error::Incomplete {
        action: "AssumeRole",
        what: "the assumed role's ARN",
    })?;
    Ok(RoleSession {
        session,
        assumed_role_arn: user.arn,
    })
}

/// The pattern of [`role_session_name`] when the profile sets none.
pub const DEFAULT_SESSION_NAME_PATTERN: &str = "{password_holder}+{token_holder}";

/// AWS's length limits for RoleSessionName and SourceIdentity.
const NAME_LEN: (usize, usize) = (2, 64);

/// A piece of a name pattern.
enum Piece<'a> {
    Text(&'a str),
    PasswordHolder,
    TokenHolder,
}

fn parse_pattern(pattern: &str) -> Result<Vec<Piece<'_>>, BadPattern> {
    let mut pieces = Vec::new();
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            pieces.push(Piece::Text(&rest[..open]));
        }
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Err(BadPattern::Unclosed {
                pattern: pattern.to_owned(),
            });
        };
        pieces.push(match &after[..close] {
            "password_holder" => Piece::PasswordHolder,
            "token_holder" => Piece::TokenHolder,
            other => {
                return Err(BadPattern::UnknownPlaceholder {
                    placeholder: other.to_owned(),
                    pattern: pattern.to_owned(),
                })
            }
        });
        rest = &after[close + 1..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest));
    }
    Ok(pieces)
}

/// `text` in AWS's name alphabet `[\w+=,.@-]` (ASCII): any other character becomes `-`.
fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Renders `pieces` within AWS's limits. When the result would be too long, the holders' names
/// are shortened first, evenly (the longest loses most), so that both stay visible; the text
/// of the pattern is cut only if it alone is too long. Too short: padded with `-`.
fn render(pieces: &[Piece<'_>], password_holder: &str, token_holder: &str) -> String {
    let holders = [sanitize(password_holder), sanitize(token_holder)];
    let texts: Vec<String> = pieces
        .iter()
        .map(|p| match p {
            Piece::Text(t) => sanitize(t),
            Piece::PasswordHolder | Piece::TokenHolder => String::new(),
        })
        .collect();
    let fixed: usize = texts.iter().map(String::len).sum();
    let budget = NAME_LEN.1.saturating_sub(fixed);
    let holder_lens: Vec<usize> = pieces
        .iter()
        .filter_map(|p| match p {
            Piece::PasswordHolder => Some(holders[0].len()),
            Piece::TokenHolder => Some(holders[1].len()),
            Piece::Text(_) => None,
        })
        .collect();
    // The largest cap on each holder's length that keeps them all within the budget.
    let used = |cap: usize| -> usize { holder_lens.iter().map(|&l| l.min(cap)).sum() };
    let cap = (0..=NAME_LEN.1)
        .rev()
        .find(|&cap| used(cap) <= budget)
        .unwrap_or(0);
    let mut name = String::with_capacity(NAME_LEN.1);
    for (piece, text) in pieces.iter().zip(&texts) {
        let part = match piece {
            Piece::Text(_) => text.as_str(),
            Piece::PasswordHolder => &holders[0][..holders[0].len().min(cap)],
            Piece::TokenHolder => &holders[1][..holders[1].len().min(cap)],
        };
        name.push_str(part);
    }
    // ASCII only after `sanitize`: byte lengths are character counts.
    name.truncate(NAME_LEN.1);
    while name.len() < NAME_LEN.0 {
        name.push('-');
    }
    name
}

/// A `role_session_name` pattern that cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BadPattern {
    /// A `{` without its `}`.
    #[error("unclosed '{{' in the role session name pattern {pattern:?}")]
    Unclosed {
        /// The pattern as configured.
        pattern: String,
    },
    /// A placeholder other than `{password_holder}` and `{token_holder}`.
    #[error(
        "unknown placeholder {{{placeholder}}} in the role session name pattern {pattern:?}: use \
         {{password_holder}} and {{token_holder}}"
    )]
    UnknownPlaceholder {
        /// The name between the braces.
        placeholder: String,
        /// The pattern as configured.
        pattern: String,
    },
}

/// RoleSessionName from `pattern` (default [`DEFAULT_SESSION_NAME_PATTERN`]), whose
/// placeholders `{password_holder}` and `{token_holder}` are replaced by the holders' names.
/// Characters outside AWS's `[\w+=,.@-]` become `-`; the result has 2-64 characters (holders'
/// names shortened evenly when too long, `-` padding when too short). `Err` names an unknown
/// placeholder or an unclosed `{`.
pub fn role_session_name(
    pattern: Option<&str>,
    password_holder: &str,
    token_holder: &str,
) -> Result<String, BadPattern> {
    let pieces = parse_pattern(pattern.unwrap_or(DEFAULT_SESSION_NAME_PATTERN))?;
    Ok(render(&pieces, password_holder, token_holder))
}

/// SourceIdentity naming both holders, `password_holder+token_holder`, in AWS's alphabet and
/// 2-64 characters like [`role_session_name`]. It never starts with the reserved `aws:`: `:` is
/// outside the alphabet.
pub fn source_identity(password_holder: &str, token_holder: &str) -> String {
    let pieces = [Piece::PasswordHolder, Piece::Text("+"), Piece::TokenHolder];
    render(&pieces, password_holder, token_holder)
}

/// GetCallerIdentity.
pub async fn get_caller_identity(
    endpoint: &Endpoint,
    signer: &Signer<'_>,
) -> Result<Identity, Error> {
    let call = Call::start("AWS STS", "GetCallerIdentity", endpoint);
    let out = client(endpoint, signer, &call)
        .await?
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| call.error(e))?;
    Ok(Identity {
        account: out.account.unwrap_or_default(),
        arn: out.arn.unwrap_or_default(),
        user_id: out.user_id.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000;

    fn creds(
        id: &str,
        secret: &str,
        token: &str,
        expiration: i64,
    ) -> Option<aws_sdk_sts::types::Credentials> {
        Some(
            aws_sdk_sts::types::Credentials::builder()
                .access_key_id(id)
                .secret_access_key(secret)
                .session_token(token)
                .expiration(aws_smithy_types::DateTime::from_secs(expiration))
                .build()
                .unwrap(),
        )
    }

    fn problem(c: Option<aws_sdk_sts::types::Credentials>) -> AnswerProblem {
        match session("GetSessionToken", c, NOW, 3600) {
            Err(Error::BadAnswer { problem, .. }) => problem,
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn sts_answers_are_checked_before_use() {
        let id = "ASIAQWERTYUIOPASDFGH";
        let t = NOW as i64;
        assert!(session("GetSessionToken", creds(id, "s", "t", t + 3600), NOW, 3600).is_ok());
        // Clock skew of up to 5 minutes is allowed.
        assert!(session("GetSessionToken", creds(id, "s", "t", t + 3900), NOW, 3600).is_ok());
        assert_eq!(problem(None), AnswerProblem::NoCredentials);
        assert_eq!(problem(creds(id, "s", "t", 0)), AnswerProblem::NoExpiration);
        assert!(matches!(
            problem(creds(id, "s", "t", t)),
            AnswerProblem::Expired { .. }
        ));
        assert!(matches!(
            problem(creds(id, "s", "t", t + 3901)),
            AnswerProblem::TooLate { .. }
        ));
        assert_eq!(
            problem(creds(id, "", "t", t + 60)),
            AnswerProblem::EmptySecret
        );
        assert_eq!(
            problem(creds(id, "s", "", t + 60)),
            AnswerProblem::EmptyToken
        );
        assert_eq!(
            problem(creds("", "s", "t", t + 60)),
            AnswerProblem::NoAccessKeyId
        );
        let p = problem(creds("ASIAQWERTY\u{1b}[2JUIOPASD", "s", "t", t + 60));
        assert_eq!(
            p,
            AnswerProblem::BadAccessKeyId {
                len: 21,
                control: true
            }
        );
        assert!(!p.to_string().contains('\u{1b}'), "{p}");
        for bad in ["ASIA123", "XXXXQWERTYUIOPASDFGH", "ASIAqwertyuiopasdfgh"] {
            assert!(
                matches!(
                    problem(creds(bad, "s", "t", t + 60)),
                    AnswerProblem::BadAccessKeyId { control: false, .. }
                ),
                "{bad}"
            );
        }
        assert!(check_key_id("AKIAIOSFODNN7EXAMPLE").is_ok());
        assert!(check_key_id(&format!("ASIA{}", "A".repeat(124))).is_ok());
        assert!(check_key_id(&format!("ASIA{}", "A".repeat(125))).is_err());
        // The secret values never appear in the error.
        let e = session(
            "GetSessionToken",
            creds("bad", "SECRETVALUE", "TOKENVALUE", 0),
            NOW,
            3600,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            !e.contains("SECRETVALUE") && !e.contains("TOKENVALUE"),
            "{e}"
        );
    }

    /// AWS's constraints on RoleSessionName and SourceIdentity.
    fn assert_aws_name(name: &str) {
        assert!((2..=64).contains(&name.len()), "{name:?}: length");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)),
            "{name:?}: alphabet"
        );
        assert!(!name.to_ascii_lowercase().starts_with("aws:"), "{name:?}");
    }

    #[test]
    fn session_name_default_pattern_names_both_holders() {
        let name = role_session_name(None, "alice", "bob").unwrap();
        assert_eq!(name, "alice+bob");
        assert_eq!(source_identity("alice", "bob"), "alice+bob");
        // With custodians the password holder is those present, joined by `+`: all of them
        // reach SourceIdentity, in AWS's alphabet.
        assert_eq!(source_identity("Carol+Dan", "Bob"), "Carol+Dan+Bob");
        assert_eq!(
            role_session_name(Some(DEFAULT_SESSION_NAME_PATTERN), "alice", "bob").unwrap(),
            name
        );
    }

    #[test]
    fn session_name_pattern_placeholders() {
        let name = |p: &str| role_session_name(Some(p), "alice", "bob");
        assert_eq!(
            name("bg-{token_holder}-{password_holder}").unwrap(),
            "bg-bob-alice"
        );
        assert_eq!(
            name("{password_holder}{password_holder}").unwrap(),
            "alicealice"
        );
        assert_eq!(name("incident").unwrap(), "incident");
        // Characters outside the alphabet, in the pattern too, become '-'.
        assert_eq!(
            name("break glass/{token_holder}}").unwrap(),
            "break-glass-bob-"
        );
        let e = name("{password_holder}+{reason}").unwrap_err().to_string();
        assert!(e.contains("{reason}"), "{e}");
        assert!(
            e.contains("{password_holder}") && e.contains("{token_holder}"),
            "{e}"
        );
        assert!(name("{Password_Holder}").is_err());
        assert!(name("{}").is_err());
        let e = name("{password_holder").unwrap_err().to_string();
        assert!(e.contains("unclosed"), "{e}");
    }

    #[test]
    fn names_are_mapped_into_the_aws_alphabet() {
        let name = role_session_name(None, "José Núñez", "o'brien:ops").unwrap();
        assert_eq!(name, "Jos--N--ez+o-brien-ops");
        assert_aws_name(&name);
        let si = source_identity("aws:admin", "x");
        assert_eq!(si, "aws-admin+x");
        assert_aws_name(&si);
        assert_eq!(source_identity("a_b=c,d.e@f-g", "h"), "a_b=c,d.e@f-g+h");
        // Non-ASCII becomes one '-' per character, not per byte.
        assert_eq!(source_identity("日本", "é"), "--+-");
    }

    #[test]
    fn long_names_are_shortened_evenly_so_both_holders_stay() {
        let long_a = "a".repeat(100);
        let long_b = "b".repeat(100);
        let si = source_identity(&long_a, &long_b);
        assert_eq!(si.len(), 63, "{si}");
        assert_eq!(si, format!("{}+{}", "a".repeat(31), "b".repeat(31)));
        // A short name keeps all its characters; the long one gets the rest.
        let si = source_identity("al", &long_b);
        assert_eq!(si, format!("al+{}", "b".repeat(61)));
        assert_aws_name(&si);
        let name = role_session_name(Some("breakglass-{token_holder}"), "x", &long_b).unwrap();
        assert_eq!(name, format!("breakglass-{}", "b".repeat(53)));
        // A pattern whose own text is too long is cut.
        let name = role_session_name(Some(&"p".repeat(80)), "x", "y").unwrap();
        assert_eq!(name, "p".repeat(64));
        let name = role_session_name(
            Some(&format!("{}{{password_holder}}", "p".repeat(70))),
            "x",
            "y",
        )
        .unwrap();
        assert_eq!(name, "p".repeat(64));
        // Exactly 64 stays whole.
        let a = "a".repeat(31);
        let b = "b".repeat(32);
        assert_eq!(source_identity(&a, &b), format!("{a}+{b}"));
    }

    #[test]
    fn short_names_are_padded() {
        assert_eq!(
            role_session_name(Some("{password_holder}"), "", "b").unwrap(),
            "--"
        );
        assert_eq!(
            role_session_name(Some("{token_holder}"), "a", "b").unwrap(),
            "b-"
        );
        assert_eq!(role_session_name(Some(""), "a", "b").unwrap(), "--");
        assert_eq!(source_identity("", ""), "+-");
        assert_aws_name(&source_identity("", ""));
    }

    #[test]
    fn names_always_fit_aws_constraints() {
        let samples = [
            "",
            "a",
            "alice",
            "aws:",
            "AWS:root",
            "é",
            "日本語の名前",
            " ",
            "\n\t",
            "a+b",
            "{x}",
        ];
        let long = "Zz9_".repeat(40);
        for a in samples.iter().copied().chain([long.as_str()]) {
            for b in samples.iter().copied().chain([long.as_str()]) {
                assert_aws_name(&source_identity(a, b));
                assert_aws_name(&role_session_name(None, a, b).unwrap());
                assert_aws_name(
                    &role_session_name(Some("x{token_holder}{password_holder}y"), a, b).unwrap(),
                );
            }
        }
    }
}
