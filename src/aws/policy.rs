//! IAM's policy language, evaluated: a trust policy read from its JSON and asked whether a
//! request (a principal, an action, its context keys) is allowed, as IAM's evaluation logic
//! decides it: an explicit deny wins, then an allow, else the implicit deny. Conditions are
//! evaluated, not searched for: `Bool`, `String*`, `Arn*`, `Numeric*`, `Null`, each with
//! `IfExists` and the `ForAnyValue:`/`ForAllValues:` set operators.
//!
//! What cannot be decided here (a `Date*` or `IpAddress` operator, a policy variable, an
//! operator IAM does not know) is [`Decision::Unknown`], which the drill reports as "check by
//! hand" rather than guessing either way.

use std::collections::BTreeMap;

use serde_json::Value;

/// A policy document that cannot be read as IAM's policy grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the policy is not a valid IAM policy: {0}")]
pub struct Malformed(pub String);

/// How IAM decides a request against one policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A statement allows it and none denies it.
    Allow,
    /// A statement denies it.
    Deny,
    /// No statement allows it.
    NotAllowed,
    /// A statement that matters uses something this evaluator cannot decide (named).
    Unknown(&'static str),
}

impl Decision {
    /// True only for [`Decision::Allow`].
    pub fn allowed(self) -> bool {
        self == Self::Allow
    }
}

/// A request as IAM sees it when a trust policy is evaluated.
#[derive(Debug, Clone)]
pub struct Request {
    /// The caller: `arn:aws:iam::ACCOUNT:user/NAME`, an assumed-role ARN, or a service
    /// principal (`ec2.amazonaws.com`).
    pub principal: String,
    /// `sts:AssumeRole`, `sts:SetSourceIdentity`, …
    pub action: String,
    /// Context keys, lower-cased (`aws:multifactorauthpresent`) → their values. An absent key
    /// is absent from the request, as IAM has it (not "false").
    pub context: BTreeMap<String, Vec<String>>,
}

impl Request {
    /// A request of `action` by IAM user or role-session `principal`, with the keys IAM sets
    /// for it (`aws:PrincipalArn`, `aws:PrincipalAccount`, `aws:PrincipalType`,
    /// `aws:SecureTransport`), and `aws:MultiFactorAuthPresent` as `mfa` says: `Some(true)` for
    /// a session made with MFA, `Some(false)` for temporary credentials made without,
    /// `None` for a long-term key (IAM then leaves the key out).
    pub fn aws(principal: &str, action: &str, mfa: Option<bool>) -> Self {
        let mut r = Self {
            principal: principal.to_owned(),
            action: action.to_owned(),
            context: BTreeMap::new(),
        };
        r.set("aws:PrincipalArn", principal);
        if let Some(account) = arn_account(principal) {
            r.set("aws:PrincipalAccount", account);
        }
        let kind = if principal.contains(":assumed-role/") {
            "AssumedRole"
        } else if principal.ends_with(":root") {
            "Account"
        } else {
            "User"
        };
        r.set("aws:PrincipalType", kind);
        r.set("aws:SecureTransport", "true");
        if let Some(mfa) = mfa {
            r.set(
                "aws:MultiFactorAuthPresent",
                if mfa { "true" } else { "false" },
            );
            if mfa {
                r.set("aws:MultiFactorAuthAge", "60");
            }
        }
        r
    }

    /// Sets context key `key` (any case) to one value.
    pub fn set(&mut self, key: &str, value: &str) -> &mut Self {
        self.context
            .insert(key.to_ascii_lowercase(), vec![value.to_owned()]);
        self
    }
}

/// The 12-digit account of an ARN (`arn:aws:iam::123456789012:user/x` → `123456789012`).
pub fn arn_account(arn: &str) -> Option<&str> {
    let account = arn.split(':').nth(4)?;
    (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())).then_some(account)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Who {
    /// `"*"` or `{"AWS": "*"}`.
    Anyone,
    /// An AWS principal: an ARN, an account's root, or a bare account id.
    Aws(String),
    /// `Service`, `Federated`, `CanonicalUser`.
    Other(String),
}

#[derive(Debug, Clone)]
enum Principals {
    /// No principal element (an identity policy's statement): matches whoever asks.
    Absent,
    Is(Vec<Who>),
    Not(Vec<Who>),
}

#[derive(Debug, Clone)]
enum Actions {
    Is(Vec<String>),
    Not(Vec<String>),
}

#[derive(Debug, Clone)]
struct Condition {
    operator: String,
    key: String,
    values: Vec<String>,
}

#[derive(Debug, Clone)]
struct Statement {
    allow: bool,
    principals: Principals,
    actions: Actions,
    conditions: Vec<Condition>,
}

/// A parsed policy document.
#[derive(Debug, Clone)]
pub struct Policy {
    statements: Vec<Statement>,
}

fn strings(v: &Value, what: &str) -> Result<Vec<String>, Malformed> {
    let one = |v: &Value| match v {
        Value::String(s) => Ok(s.clone()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(Malformed(format!("{what} holds something other than text"))),
    };
    match v {
        Value::Array(items) => items.iter().map(one).collect(),
        other => Ok(vec![one(other)?]),
    }
}

fn principals(v: &Value) -> Result<Vec<Who>, Malformed> {
    match v {
        Value::String(s) if s == "*" => Ok(vec![Who::Anyone]),
        Value::Object(map) => {
            let mut out = Vec::new();
            for (kind, ids) in map {
                for id in strings(ids, "Principal")? {
                    out.push(match kind.as_str() {
                        "AWS" if id == "*" => Who::Anyone,
                        "AWS" => Who::Aws(id),
                        "Service" | "Federated" | "CanonicalUser" => Who::Other(id),
                        other => {
                            return Err(Malformed(format!("unknown principal type {other:?}")))
                        }
                    });
                }
            }
            Ok(out)
        }
        _ => Err(Malformed("Principal is neither \"*\" nor an object".into())),
    }
}

fn statement(v: &Value) -> Result<Statement, Malformed> {
    let map = v
        .as_object()
        .ok_or_else(|| Malformed("a statement is not an object".into()))?;
    let allow = match map.get("Effect").and_then(Value::as_str) {
        Some("Allow") => true,
        Some("Deny") => false,
        _ => {
            return Err(Malformed(
                "a statement's Effect is not Allow or Deny".into(),
            ))
        }
    };
    let principals = match (map.get("Principal"), map.get("NotPrincipal")) {
        (Some(_), Some(_)) => {
            return Err(Malformed(
                "a statement has both Principal and NotPrincipal".into(),
            ))
        }
        (Some(p), None) => Principals::Is(principals(p)?),
        (None, Some(p)) => Principals::Not(principals(p)?),
        (None, None) => Principals::Absent,
    };
    let actions = match (map.get("Action"), map.get("NotAction")) {
        (Some(a), None) => Actions::Is(strings(a, "Action")?),
        (None, Some(a)) => Actions::Not(strings(a, "NotAction")?),
        _ => {
            return Err(Malformed(
                "a statement needs exactly one of Action and NotAction".into(),
            ))
        }
    };
    let mut conditions = Vec::new();
    if let Some(c) = map.get("Condition") {
        let ops = c
            .as_object()
            .ok_or_else(|| Malformed("Condition is not an object".into()))?;
        for (operator, keys) in ops {
            let keys = keys
                .as_object()
                .ok_or_else(|| Malformed(format!("the {operator} condition is not an object")))?;
            for (key, values) in keys {
                conditions.push(Condition {
                    operator: operator.clone(),
                    key: key.to_ascii_lowercase(),
                    values: strings(values, "a condition's value")?,
                });
            }
        }
    }
    Ok(Statement {
        allow,
        principals,
        actions,
        conditions,
    })
}

impl Policy {
    /// Reads a policy document (IAM's JSON; `GetRole` answers it URL-encoded, which the
    /// caller decodes first).
    pub fn parse(json: &str) -> Result<Self, Malformed> {
        let doc: Value =
            serde_json::from_str(json).map_err(|e| Malformed(format!("not JSON ({e})")))?;
        let statements = match doc.get("Statement") {
            Some(Value::Array(items)) => items.iter().map(statement).collect::<Result<_, _>>()?,
            Some(one @ Value::Object(_)) => vec![statement(one)?],
            _ => return Err(Malformed("no Statement".into())),
        };
        Ok(Self { statements })
    }

    /// IAM's decision on `req`: any matching Deny wins, then any matching Allow. A statement
    /// whose match cannot be decided makes the result [`Decision::Unknown`] unless a decided
    /// Deny already settles it.
    pub fn evaluate(&self, req: &Request) -> Decision {
        let mut allowed = false;
        let mut unknown = None;
        for s in &self.statements {
            match s.applies(req) {
                Tri::True if !s.allow => return Decision::Deny,
                Tri::True => allowed = true,
                Tri::False => {}
                Tri::Unknown(why) => unknown = unknown.or(Some(why)),
            }
        }
        match (unknown, allowed) {
            (Some(why), _) => Decision::Unknown(why),
            (None, true) => Decision::Allow,
            (None, false) => Decision::NotAllowed,
        }
    }

    /// The AWS principals (ARNs, account ids, `*` as "anyone", services) that some Allow
    /// statement of `action` names, before its conditions: the candidates to probe.
    pub fn allowed_principals(&self, action: &str) -> Vec<String> {
        let mut out = Vec::new();
        for s in self.statements.iter().filter(|s| s.allow) {
            if !s.actions.matches(action) {
                continue;
            }
            let whos: Vec<Who> = match &s.principals {
                Principals::Is(w) => w.clone(),
                Principals::Not(_) | Principals::Absent => vec![Who::Anyone],
            };
            for w in whos {
                let text = match w {
                    Who::Anyone => "*".to_owned(),
                    Who::Aws(a) | Who::Other(a) => a,
                };
                if !out.contains(&text) {
                    out.push(text);
                }
            }
        }
        out
    }
}

/// Three-valued truth: a condition this evaluator cannot decide is neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tri {
    True,
    False,
    Unknown(&'static str),
}

impl Tri {
    fn of(b: bool) -> Self {
        if b {
            Self::True
        } else {
            Self::False
        }
    }

    fn and(self, other: impl FnOnce() -> Tri) -> Tri {
        match self {
            Tri::False => Tri::False,
            Tri::True => other(),
            Tri::Unknown(why) => match other() {
                Tri::False => Tri::False,
                _ => Tri::Unknown(why),
            },
        }
    }
}

impl Statement {
    fn applies(&self, req: &Request) -> Tri {
        if !self.actions.matches(&req.action) {
            return Tri::False;
        }
        let who = match &self.principals {
            Principals::Absent => true,
            Principals::Is(w) => w.iter().any(|w| w.matches(&req.principal)),
            Principals::Not(w) => !w.iter().any(|w| w.matches(&req.principal)),
        };
        if !who {
            return Tri::False;
        }
        self.conditions
            .iter()
            .fold(Tri::True, |acc, c| acc.and(|| c.evaluate(&req.context)))
    }
}

impl Who {
    fn matches(&self, principal: &str) -> bool {
        match self {
            Who::Anyone => true,
            Who::Other(s) => s == principal,
            Who::Aws(id) => {
                // An account (its root, or its bare id) trusts every principal of that account
                // whose own policies allow the call: for a trust policy, the account's users and
                // roles all match.
                let account = if id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit()) {
                    Some(id.as_str())
                } else if id.ends_with(":root") {
                    arn_account(id)
                } else {
                    None
                };
                match account {
                    Some(a) => arn_account(principal) == Some(a),
                    None => id == principal || role_of_session(principal).as_deref() == Some(id),
                }
            }
        }
    }
}

/// The role ARN of an assumed-role session ARN (`arn:aws:sts::A:assumed-role/R/S` →
/// `arn:aws:iam::A:role/R`).
fn role_of_session(arn: &str) -> Option<String> {
    let (head, rest) = arn.split_once(":assumed-role/")?;
    let account = head.rsplit(':').next()?;
    let partition = head.split(':').nth(1)?;
    let role = rest.split('/').next()?;
    Some(format!("arn:{partition}:iam::{account}:role/{role}"))
}

impl Actions {
    fn matches(&self, action: &str) -> bool {
        match self {
            Actions::Is(a) => a.iter().any(|p| glob(p, action, true)),
            Actions::Not(a) => !a.iter().any(|p| glob(p, action, true)),
        }
    }
}

/// IAM's wildcard match: `*` any run of characters, `?` any one character.
fn glob(pattern: &str, text: &str, ignore_case: bool) -> bool {
    let norm = |s: &str| -> Vec<char> {
        if ignore_case {
            s.to_lowercase().chars().collect()
        } else {
            s.chars().collect()
        }
    };
    let (p, t) = (norm(pattern), norm(text));
    // Iterative matching with backtracking to the last star.
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

impl Condition {
    fn evaluate(&self, context: &BTreeMap<String, Vec<String>>) -> Tri {
        if self.values.iter().any(|v| v.contains("${")) {
            return Tri::Unknown("a policy variable in a condition");
        }
        let (set, rest) = match self.operator.split_once(':') {
            Some((set, rest)) => (Some(set), rest),
            None => (None, self.operator.as_str()),
        };
        let (op, if_exists) = match rest.strip_suffix("IfExists") {
            Some(op) => (op, true),
            None => (rest, false),
        };
        let present = context.get(&self.key);
        if op == "Null" {
            let want_absent = match self.values.as_slice() {
                [v] if v == "true" => true,
                [v] if v == "false" => false,
                _ => return Tri::Unknown("a Null condition that is neither true nor false"),
            };
            return Tri::of(present.is_none() == want_absent);
        }
        let Some(test) = operator(op) else {
            return Tri::Unknown(match op {
                o if o.starts_with("Date") => "a Date condition",
                o if o.contains("IpAddress") => "an IpAddress condition",
                _ => "a condition operator IAM does not define",
            });
        };
        let Some(values) = present else {
            // A missing key: `IfExists` makes the condition true; otherwise a negated operator
            // is true and a positive one false (IAM's documented behaviour).
            return Tri::of(if_exists || test.negated);
        };
        let one = |v: &str| -> Result<bool, &'static str> {
            let any = self
                .values
                .iter()
                .map(|want| (test.matches)(want, v))
                .try_fold(false, |acc, m| m.map(|m| acc || m))?;
            Ok(if test.negated { !any } else { any })
        };
        let result = match set {
            Some("ForAllValues") => values
                .iter()
                .try_fold(true, |acc, v| one(v).map(|m| acc && m)),
            Some("ForAnyValue") | None => values
                .iter()
                .try_fold(false, |acc, v| one(v).map(|m| acc || m)),
            Some(_) => Err("a condition set operator IAM does not define"),
        };
        match result {
            Ok(b) => Tri::of(b),
            Err(why) => Tri::Unknown(why),
        }
    }
}

/// One condition operator: how a policy value matches a request value, and whether the
/// operator is the negation of that match.
struct Test {
    matches: fn(&str, &str) -> Result<bool, &'static str>,
    negated: bool,
}

fn operator(op: &str) -> Option<Test> {
    fn eq(w: &str, v: &str) -> Result<bool, &'static str> {
        Ok(w == v)
    }
    fn eq_ci(w: &str, v: &str) -> Result<bool, &'static str> {
        Ok(w.eq_ignore_ascii_case(v))
    }
    fn like(w: &str, v: &str) -> Result<bool, &'static str> {
        Ok(glob(w, v, false))
    }
    fn boolean(w: &str, v: &str) -> Result<bool, &'static str> {
        let norm = |s: &str| s.eq_ignore_ascii_case("true");
        Ok(norm(w) == norm(v))
    }
    fn arn(w: &str, v: &str) -> Result<bool, &'static str> {
        // ARNs match field by field, each field a wildcard pattern (case-sensitive).
        let (wp, vp): (Vec<&str>, Vec<&str>) =
            (w.splitn(6, ':').collect(), v.splitn(6, ':').collect());
        Ok(wp.len() == 6 && vp.len() == 6 && wp.iter().zip(&vp).all(|(a, b)| glob(a, b, false)))
    }
    fn num(w: &str, v: &str) -> Result<(f64, f64), &'static str> {
        let parse = |s: &str| s.parse::<f64>().map_err(|_| "a Numeric condition on text");
        Ok((parse(w)?, parse(v)?))
    }
    fn lt(w: &str, v: &str) -> Result<bool, &'static str> {
        num(w, v).map(|(w, v)| v < w)
    }
    fn le(w: &str, v: &str) -> Result<bool, &'static str> {
        num(w, v).map(|(w, v)| v <= w)
    }
    fn gt(w: &str, v: &str) -> Result<bool, &'static str> {
        num(w, v).map(|(w, v)| v > w)
    }
    fn ge(w: &str, v: &str) -> Result<bool, &'static str> {
        num(w, v).map(|(w, v)| v >= w)
    }
    fn neq(w: &str, v: &str) -> Result<bool, &'static str> {
        num(w, v).map(|(w, v)| v == w)
    }
    let t = |matches, negated| Some(Test { matches, negated });
    match op {
        "StringEquals" => t(eq, false),
        "StringNotEquals" => t(eq, true),
        "StringEqualsIgnoreCase" => t(eq_ci, false),
        "StringNotEqualsIgnoreCase" => t(eq_ci, true),
        "StringLike" => t(like, false),
        "StringNotLike" => t(like, true),
        "Bool" => t(boolean, false),
        "ArnEquals" | "ArnLike" => t(arn, false),
        "ArnNotEquals" | "ArnNotLike" => t(arn, true),
        "NumericEquals" => t(neq, false),
        "NumericNotEquals" => t(neq, true),
        "NumericLessThan" => t(lt, false),
        "NumericLessThanEquals" => t(le, false),
        "NumericGreaterThan" => t(gt, false),
        "NumericGreaterThanEquals" => t(ge, false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER: &str = "arn:aws:iam::123456789012:user/breakglass";

    fn trust(statement: &str) -> Policy {
        Policy::parse(&format!(
            r#"{{"Version":"2012-10-17","Statement":[{statement}]}}"#
        ))
        .unwrap()
    }

    fn assume(p: &Policy, principal: &str, mfa: Option<bool>) -> Decision {
        p.evaluate(&Request::aws(principal, "sts:AssumeRole", mfa))
    }

    #[test]
    fn an_mfa_condition_is_evaluated_for_each_kind_of_caller() {
        let p = trust(&format!(
            r#"{{"Effect":"Allow","Principal":{{"AWS":"{USER}"}},"Action":"sts:AssumeRole","Condition":{{"Bool":{{"aws:MultiFactorAuthPresent":"true"}}}}}}"#
        ));
        assert_eq!(assume(&p, USER, Some(true)), Decision::Allow);
        assert_eq!(assume(&p, USER, Some(false)), Decision::NotAllowed);
        assert_eq!(assume(&p, USER, None), Decision::NotAllowed);
        // BoolIfExists lets a long-term key (no MFA key at all) in: IAM's known trap.
        let p = trust(&format!(
            r#"{{"Effect":"Allow","Principal":{{"AWS":"{USER}"}},"Action":"sts:AssumeRole","Condition":{{"BoolIfExists":{{"aws:MultiFactorAuthPresent":"true"}}}}}}"#
        ));
        assert_eq!(assume(&p, USER, None), Decision::Allow);
        assert_eq!(assume(&p, USER, Some(false)), Decision::NotAllowed);
        // The text "MultiFactorAuthPresent" in a condition that does not require it.
        let p = trust(&format!(
            r#"{{"Effect":"Allow","Principal":{{"AWS":"{USER}"}},"Action":"sts:AssumeRole","Condition":{{"Null":{{"aws:MultiFactorAuthPresent":"false"}}}}}}"#
        ));
        assert_eq!(assume(&p, USER, Some(false)), Decision::Allow);
    }

    #[test]
    fn accounts_roots_and_anyone_match_as_iam_has_it() {
        let other = "arn:aws:iam::123456789012:user/someone";
        let outside = "arn:aws:iam::999999999999:user/someone";
        for (principal, who_matches) in [
            (r#""*""#, vec![USER, other, outside]),
            (r#"{"AWS":"*"}"#, vec![USER, other, outside]),
            (r#"{"AWS":"123456789012"}"#, vec![USER, other]),
            (
                r#"{"AWS":"arn:aws:iam::123456789012:root"}"#,
                vec![USER, other],
            ),
            (&format!(r#"{{"AWS":["{USER}"]}}"#), vec![USER]),
        ] {
            let p = trust(&format!(
                r#"{{"Effect":"Allow","Principal":{principal},"Action":"sts:AssumeRole"}}"#
            ));
            for who in [USER, other, outside] {
                assert_eq!(
                    assume(&p, who, Some(true)).allowed(),
                    who_matches.contains(&who),
                    "{principal} for {who}"
                );
            }
        }
    }

    #[test]
    fn an_explicit_deny_wins_and_actions_match_with_wildcards() {
        let p = trust(&format!(
            r#"{{"Effect":"Allow","Principal":{{"AWS":"{USER}"}},"Action":["sts:Assume*","sts:TagSession"]}},
               {{"Effect":"Deny","Principal":"*","Action":"sts:SetSourceIdentity"}}"#
        ));
        assert_eq!(assume(&p, USER, Some(true)), Decision::Allow);
        let set = Request::aws(USER, "sts:SetSourceIdentity", Some(true));
        assert_eq!(p.evaluate(&set), Decision::Deny);
        let tag = Request::aws(USER, "STS:tagsession", Some(true));
        assert_eq!(p.evaluate(&tag), Decision::Allow);
        let p = trust(&format!(
            r#"{{"Effect":"Allow","Principal":{{"AWS":"{USER}"}},"NotAction":"sts:SetSourceIdentity"}}"#
        ));
        assert_eq!(p.evaluate(&set), Decision::NotAllowed);
        assert_eq!(assume(&p, USER, None), Decision::Allow);
    }

    #[test]
    fn string_arn_and_numeric_conditions() {
        let p = trust(
            r#"{"Effect":"Allow","Principal":{"AWS":"123456789012"},"Action":"sts:AssumeRole",
                "Condition":{"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::*:user/break*"},
                              "NumericLessThan":{"aws:MultiFactorAuthAge":"3600"}}}"#,
        );
        assert_eq!(assume(&p, USER, Some(true)), Decision::Allow);
        assert_eq!(assume(&p, USER, None), Decision::NotAllowed);
        assert_eq!(
            assume(&p, "arn:aws:iam::123456789012:user/admin", Some(true)),
            Decision::NotAllowed
        );
        let p = trust(
            r#"{"Effect":"Allow","Principal":"*","Action":"sts:AssumeRole",
                "Condition":{"StringNotEquals":{"aws:PrincipalAccount":"123456789012"}}}"#,
        );
        assert_eq!(assume(&p, USER, Some(true)), Decision::NotAllowed);
        assert_eq!(
            assume(&p, "arn:aws:iam::999999999999:user/x", Some(true)),
            Decision::Allow
        );
        let p = trust(
            r#"{"Effect":"Allow","Principal":"*","Action":"sts:AssumeRole",
                "Condition":{"ForAnyValue:StringLike":{"aws:PrincipalType":["Assumed*","Us?r"]}}}"#,
        );
        assert_eq!(assume(&p, USER, None), Decision::Allow);
    }

    #[test]
    fn what_cannot_be_decided_is_said_so() {
        let p = trust(&format!(
            r#"{{"Effect":"Allow","Principal":{{"AWS":"{USER}"}},"Action":"sts:AssumeRole","Condition":{{"DateLessThan":{{"aws:CurrentTime":"2030-01-01T00:00:00Z"}}}}}}"#
        ));
        assert_eq!(
            assume(&p, USER, Some(true)),
            Decision::Unknown("a Date condition")
        );
        // A decided Deny still settles it.
        let p = trust(&format!(
            r#"{{"Effect":"Allow","Principal":{{"AWS":"{USER}"}},"Action":"sts:AssumeRole","Condition":{{"IpAddress":{{"aws:SourceIp":"10.0.0.0/8"}}}}}},
               {{"Effect":"Deny","Principal":"*","Action":"*"}}"#
        ));
        assert_eq!(assume(&p, USER, Some(true)), Decision::Deny);
        let p = trust(&format!(
            r#"{{"Effect":"Allow","Principal":{{"AWS":"{USER}"}},"Action":"sts:AssumeRole","Condition":{{"StringEquals":{{"aws:username":"${{aws:username}}"}}}}}}"#
        ));
        assert!(matches!(assume(&p, USER, Some(true)), Decision::Unknown(_)));
    }

    #[test]
    fn malformed_documents_are_refused_with_the_reason() {
        for (doc, why) in [
            ("not json", "not JSON"),
            (r#"{"Version":"2012-10-17"}"#, "no Statement"),
            (
                r#"{"Statement":[{"Effect":"Maybe","Action":"*"}]}"#,
                "Effect",
            ),
            (r#"{"Statement":{"Effect":"Allow"}}"#, "Action"),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"*","Principal":{"Robot":"x"}}}"#,
                "principal type",
            ),
        ] {
            let e = Policy::parse(doc).unwrap_err();
            assert!(e.to_string().contains(why), "{doc}: {e}");
        }
        // A single statement object, not an array, is valid.
        assert!(
            Policy::parse(r#"{"Statement":{"Effect":"Allow","Action":"*","Principal":"*"}}"#)
                .is_ok()
        );
    }

    #[test]
    fn globs_backtrack() {
        assert!(glob("a*b*c", "axxbyyc", false));
        assert!(!glob("a*b*c", "axxbyy", false));
        assert!(glob("*", "", false));
        assert!(glob("arn:*:user/?x", "arn:aws:user/ax", false));
        assert!(!glob("ABC", "abc", false));
        assert!(glob("ABC", "abc", true));
    }

    #[test]
    fn sessions_of_a_trusted_role_match_the_role() {
        let role = "arn:aws:iam::123456789012:role/ops";
        let p = trust(&format!(
            r#"{{"Effect":"Allow","Principal":{{"AWS":"{role}"}},"Action":"sts:AssumeRole"}}"#
        ));
        let session = "arn:aws:sts::123456789012:assumed-role/ops/alice";
        assert_eq!(assume(&p, session, Some(true)), Decision::Allow);
        assert_eq!(
            p.allowed_principals("sts:AssumeRole"),
            vec![role.to_owned()]
        );
    }
}
