//! What the agent reports to `breakglass status`: typed at both ends, JSON on the wire (the
//! same document `status --json` prints). Never a secret: names, times, key ids.

use serde::{Deserialize, Serialize};

/// The agent and the profiles it holds or is unlocking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Process id of the agent.
    pub pid: u32,
    /// The user the agent serves (its effective uid).
    pub uid: u32,
    /// Path of the agent's socket.
    pub socket: String,
    /// RFC 3339.
    pub now: String,
    /// The session arena is locked in memory (never swapped).
    pub memory_locked: bool,
    /// Why it is not, when it is not.
    pub memory_lock_error: Option<String>,
    /// Hardening steps that failed at start (core dumps, ptrace).
    pub hardening_failures: Vec<String>,
    /// Idle minutes after which a session is wiped.
    pub idle_timeout_minutes: u64,
    /// Every profile with a session or a lead, in name order.
    pub profiles: Vec<ProfileStatus>,
}

/// One profile: its two-person session (when unlocked), its role session, a running lead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileStatus {
    /// The profile's name in the config.
    pub profile: String,
    /// The two-person session, when unlocked (its fields flattened into the profile's object).
    #[serde(flatten)]
    pub session: Option<SessionStatus>,
    /// The role session, when one was handed out.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub role: Option<RoleStatus>,
    /// A ceremony or role refresh under way.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub running: Option<Running>,
}

/// The two-person session of a profile. Times are RFC 3339.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStatus {
    /// Who the session is: the IAM user's ARN.
    pub identity: String,
    /// Who typed the passphrase.
    pub password_holder: String,
    /// Who touched the token.
    pub token_holder: String,
    /// The MFA device the session was made with.
    pub mfa_serial: String,
    /// When the ceremony ended.
    pub activated: String,
    /// When STS ends the session.
    pub expires: String,
    /// The session's temporary access key id (`ASIA…`), never its secret.
    pub temporary_access_key_id: String,
    /// When it will be wiped if unused (last use plus the idle timeout).
    pub idle_wipe: String,
    /// The process that ran the ceremony and stored the session (0: not known).
    #[serde(default)]
    pub stored_by_pid: i32,
    /// Its executable, as the agent read it (the breakglass program: no other may lead).
    #[serde(default)]
    pub stored_by_exe: String,
}

/// The role session handed out for a profile with `role_arn`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleStatus {
    /// The role asked for.
    pub role_arn: String,
    /// The assumed-role ARN STS answered (`arn:aws:sts::…:assumed-role/NAME/SESSION`).
    pub assumed_role_arn: String,
    /// When STS ends the role session, RFC 3339.
    pub expires: String,
}

/// A lead in progress: what it runs, in which process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Running {
    /// `"ceremony"` or `"AssumeRole"`.
    pub what: String,
    /// Process id of the leader (SO_PEERCRED).
    pub pid: i32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_locked_profile_with_a_lead_has_no_session_fields_and_round_trips() {
        let s = Status {
            pid: 9,
            uid: 1000,
            socket: "/run/user/1000/breakglass/agent.sock".into(),
            now: "2026-12-01T00:00:00Z".into(),
            memory_locked: true,
            memory_lock_error: None,
            hardening_failures: vec![],
            idle_timeout_minutes: 60,
            profiles: vec![ProfileStatus {
                profile: "prod".into(),
                session: None,
                role: None,
                running: Some(Running {
                    what: "ceremony".into(),
                    pid: 42,
                }),
            }],
        };
        let text = serde_json::to_string(&s).unwrap();
        assert!(
            text.contains(r#"{"profile":"prod","running":{"what":"ceremony","pid":42}}"#),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<Status>(&text).unwrap(), s);
    }
}
