//! The AWS Query protocol's wire format for the emulator: form parameters in, XML result and
//! `ErrorResponse` documents out (written with `aws-smithy-xml`), and the AWS error codes with
//! their HTTP statuses.

use aws_smithy_xml::encode::{ScopeWriter, XmlWriter};
use zeroize::{Zeroize, Zeroizing};

/// The two Query services the emulator answers on one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Sts,
    Iam,
    /// AWS Organizations: the JSON protocol (`X-Amz-Target`), not Query.
    Organizations,
    /// Amazon EventBridge: the JSON protocol too.
    Events,
}

impl Service {
    /// The SigV4 signing name, as found in the credential scope.
    pub fn signing_name(self) -> &'static str {
        match self {
            Self::Sts => "sts",
            Self::Iam => "iam",
            Self::Organizations => "organizations",
            Self::Events => "events",
        }
    }

    pub fn from_signing_name(name: &str) -> Option<Self> {
        match name {
            "sts" => Some(Self::Sts),
            "iam" => Some(Self::Iam),
            "organizations" => Some(Self::Organizations),
            "events" => Some(Self::Events),
            _ => None,
        }
    }

    /// The API version every request must name.
    pub fn version(self) -> &'static str {
        match self {
            Self::Sts => "2011-06-15",
            Self::Iam => "2010-05-08",
            Self::Organizations => "2016-11-28",
            Self::Events => "2015-10-07",
        }
    }

    pub fn namespace(self) -> &'static str {
        match self {
            Self::Sts => "https://sts.amazonaws.com/doc/2011-06-15/",
            Self::Iam => "https://iam.amazonaws.com/doc/2010-05-08/",
            Self::Organizations | Self::Events => "",
        }
    }
}

/// An AWS error, as the service reports it. Messages use AWS's words where known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Fault {
    /// 403: authenticated, but not allowed (policy, MFA, session kind).
    #[error("{0}")]
    AccessDenied(String),
    /// 403: unknown or inactive key, or a session token that does not match.
    #[error("The security token included in the request is invalid.")]
    InvalidClientTokenId,
    /// 403: the session's expiration has passed.
    #[error("The security token included in the request is expired")]
    ExpiredToken,
    /// 403: wrong signature, wrong scope or a clock outside the 15-minute window.
    #[error("{0}")]
    SignatureDoesNotMatch(String),
    /// 403: no `Authorization` header.
    #[error("Request is missing Authentication Token")]
    MissingAuthenticationToken,
    /// 400: an `Authorization` header or `X-Amz-Date` that cannot be parsed.
    #[error("{0}")]
    IncompleteSignature(String),
    /// 400: `x-amz-content-sha256` is not the hash of the body.
    #[error("The provided 'x-amz-content-sha256' header does not match what was computed.")]
    ContentSha256Mismatch,
    /// 400: a parameter outside its constraints.
    #[error("{0}")]
    Validation(String),
    /// 400: no such action in this API version.
    #[error("{0}")]
    InvalidAction(String),
    /// 400: a body or query string that is not valid form encoding.
    #[error("{0}")]
    MalformedQueryString(String),
    /// 403 (IAM): the two codes given to EnableMFADevice are not consecutive valid codes.
    #[error("Authentication code for device is not valid.")]
    InvalidAuthenticationCode,
    /// 409 (IAM): a quota would be exceeded.
    #[error("{0}")]
    LimitExceeded(String),
    /// 404 (IAM): no such user, key or device.
    #[error("{0}")]
    NoSuchEntity(String),
    /// 409 (IAM): the name is taken or the device is in use.
    #[error("{0}")]
    EntityAlreadyExists(String),
    /// 400: the account's request rate is exceeded.
    #[error("Rate exceeded")]
    Throttling,
}

impl Fault {
    pub fn code(&self) -> &'static str {
        match self {
            Self::AccessDenied(_) => "AccessDenied",
            Self::InvalidClientTokenId => "InvalidClientTokenId",
            Self::ExpiredToken => "ExpiredToken",
            Self::SignatureDoesNotMatch(_) => "SignatureDoesNotMatch",
            Self::MissingAuthenticationToken => "MissingAuthenticationToken",
            Self::IncompleteSignature(_) => "IncompleteSignature",
            Self::ContentSha256Mismatch => "XAmzContentSHA256Mismatch",
            Self::Validation(_) => "ValidationError",
            Self::InvalidAction(_) => "InvalidAction",
            Self::MalformedQueryString(_) => "MalformedQueryString",
            Self::InvalidAuthenticationCode => "InvalidAuthenticationCode",
            Self::LimitExceeded(_) => "LimitExceeded",
            Self::NoSuchEntity(_) => "NoSuchEntity",
            Self::EntityAlreadyExists(_) => "EntityAlreadyExists",
            Self::Throttling => "Throttling",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Self::AccessDenied(_)
            | Self::InvalidClientTokenId
            | Self::ExpiredToken
            | Self::SignatureDoesNotMatch(_)
            | Self::MissingAuthenticationToken
            | Self::InvalidAuthenticationCode => 403,
            Self::IncompleteSignature(_)
            | Self::ContentSha256Mismatch
            | Self::Validation(_)
            | Self::InvalidAction(_)
            | Self::MalformedQueryString(_)
            | Self::Throttling => 400,
            Self::NoSuchEntity(_) => 404,
            Self::LimitExceeded(_) | Self::EntityAlreadyExists(_) => 409,
        }
    }

    /// AWS's wording for a parameter that breaks a constraint; `value` `None` means absent.
    pub fn invalid(field: &str, value: Option<&str>, constraint: &str) -> Self {
        let value = value.map_or_else(|| "null".to_owned(), |v| format!("'{v}'"));
        Self::Validation(format!(
            "1 validation error detected: Value {value} at '{field}' failed to satisfy \
             constraint: Member must {constraint}"
        ))
    }

    /// AWS's wording for a policy refusal.
    pub fn not_authorized(caller_arn: &str, action: &str, resource: &str) -> Self {
        Self::AccessDenied(format!(
            "User: {caller_arn} is not authorized to perform: {action} on resource: {resource}"
        ))
    }
}

/// Decoded request parameters (query string, then form body), wiped on drop: they carry
/// one-time codes.
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Self(pairs)
    }

    /// The first value of `name`, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `name`, or AWS's "must not be null" validation error naming `field`.
    pub fn required(&self, name: &str, field: &str) -> Result<&str, Fault> {
        self.get(name)
            .ok_or_else(|| Fault::invalid(field, None, "not be null"))
    }

    /// An integer parameter in `min..=max`, `default` when absent.
    pub fn seconds(
        &self,
        name: &str,
        field: &str,
        range: (i64, i64),
        default: i64,
    ) -> Result<i64, Fault> {
        let Some(raw) = self.get(name) else {
            return Ok(default);
        };
        let value: i64 = raw
            .parse()
            .map_err(|_| Fault::invalid(field, Some(raw), "be a number"))?;
        if value < range.0 {
            let c = format!("have value greater than or equal to {}", range.0);
            return Err(Fault::invalid(field, Some(raw), &c));
        }
        if value > range.1 {
            let c = format!("have value less than or equal to {}", range.1);
            return Err(Fault::invalid(field, Some(raw), &c));
        }
        Ok(value)
    }
}

impl Drop for Params {
    fn drop(&mut self) {
        for (k, v) in &mut self.0 {
            k.zeroize();
            v.zeroize();
        }
    }
}

/// True for IAM's name alphabet `[\w+=,.@-]`, plus the extra characters in `extra`.
pub fn is_name(s: &str, extra: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) || extra.contains(c))
}

/// Checks the length and alphabet of a name-like parameter.
pub fn check_name(field: &str, value: &str, len: (usize, usize), extra: &str) -> Result<(), Fault> {
    if value.len() < len.0 {
        let c = format!("have length greater than or equal to {}", len.0);
        return Err(Fault::invalid(field, Some(value), &c));
    }
    if value.len() > len.1 {
        let c = format!("have length less than or equal to {}", len.1);
        return Err(Fault::invalid(field, Some(value), &c));
    }
    if !is_name(value, extra) {
        let c = format!("satisfy regular expression pattern: [\\w+=,.@-{extra}]+");
        return Err(Fault::invalid(field, Some(value), &c));
    }
    Ok(())
}

/// Room reserved for a response document at once: growing a buffer that holds credentials
/// would leave unwiped copies of them behind. Documents are well under 2 KiB.
const DOCUMENT_CAPACITY: usize = 4096;

/// One step of an [`Xml`] fragment.
enum Part {
    Open(&'static str),
    Text(&'static str, Zeroizing<String>),
    Close,
}

/// An XML fragment under construction, written out by [`success`]; the texts may be
/// credentials, so they are wiped on drop.
#[derive(Default)]
pub struct Xml(Vec<Part>);

impl Xml {
    /// An empty fragment.
    pub fn new() -> Self {
        Self::default()
    }

    /// `<name>text</name>`, with `text` escaped.
    pub fn el(&mut self, name: &'static str, text: &str) -> &mut Self {
        self.0
            .push(Part::Text(name, Zeroizing::new(text.to_owned())));
        self
    }

    /// `<name>`, to be closed with [`Xml::close`].
    pub fn open(&mut self, name: &'static str) -> &mut Self {
        self.0.push(Part::Open(name));
        self
    }

    /// Closes the element last opened with [`Xml::open`], named `name`.
    pub fn close(&mut self, name: &'static str) -> &mut Self {
        debug_assert!(self.open_element() == Some(name), "closing <{name}>");
        self.0.push(Part::Close);
        self
    }

    /// The element last opened and not yet closed, if any.
    fn open_element(&self) -> Option<&'static str> {
        let mut depth = 0usize;
        for part in self.0.iter().rev() {
            match part {
                Part::Close => depth += 1,
                Part::Open(name) if depth == 0 => return Some(name),
                Part::Open(_) => depth -= 1,
                Part::Text(..) => {}
            }
        }
        None
    }

    /// Writes the fragment inside `scope`, nesting as opened and closed.
    fn write<'p>(scope: &mut ScopeWriter<'_, '_>, parts: &mut impl Iterator<Item = &'p Part>) {
        while let Some(part) = parts.next() {
            match part {
                Part::Text(name, text) => scope.start_el(name).finish().data(text),
                Part::Open(name) => Self::write(&mut scope.start_el(name).finish(), parts),
                Part::Close => return,
            }
        }
    }
}

/// The success document: `<ActionResponse><ActionResult>…</ActionResult><ResponseMetadata>`.
/// Actions without output (`result` `None`) carry only the metadata, as AWS's do.
pub fn success(
    service: Service,
    action: &str,
    result: Option<&Xml>,
    request_id: &str,
) -> Zeroizing<String> {
    let mut doc = Zeroizing::new(String::with_capacity(DOCUMENT_CAPACITY));
    let (response_tag, result_tag) = (format!("{action}Response"), format!("{action}Result"));
    let mut writer = XmlWriter::new(&mut doc);
    let mut response = writer
        .start_el(&response_tag)
        .write_ns(service.namespace(), None)
        .finish();
    if let Some(result) = result {
        Xml::write(
            &mut response.start_el(&result_tag).finish(),
            &mut result.0.iter(),
        );
    }
    let mut metadata = response.start_el("ResponseMetadata").finish();
    metadata.start_el("RequestId").finish().data(request_id);
    metadata.finish();
    response.finish();
    doc
}

/// The `ErrorResponse` document for `fault`.
pub fn error(service: Service, fault: &Fault, request_id: &str) -> String {
    let mut doc = String::new();
    let mut writer = XmlWriter::new(&mut doc);
    let mut response = writer
        .start_el("ErrorResponse")
        .write_ns(service.namespace(), None)
        .finish();
    let mut error = response.start_el("Error").finish();
    error.start_el("Type").finish().data("Sender");
    error.start_el("Code").finish().data(fault.code());
    error.start_el("Message").finish().data(&fault.to_string());
    error.finish();
    response.start_el("RequestId").finish().data(request_id);
    response.finish();
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_document_escapes_and_names_the_code() {
        let fault = Fault::AccessDenied("a <b> & c".into());
        let doc = error(Service::Sts, &fault, "rid");
        assert_eq!(
            doc,
            "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender\
             </Type><Code>AccessDenied</Code><Message>a &lt;b&gt; &amp; c</Message></Error>\
             <RequestId>rid</RequestId></ErrorResponse>"
        );
        assert_eq!(fault.status(), 403);
    }

    #[test]
    fn success_without_result_has_only_metadata() {
        let doc = success(Service::Iam, "EnableMFADevice", None, "r");
        assert!(doc.starts_with("<EnableMFADeviceResponse xmlns=\"https://iam.amazonaws.com/"));
        assert!(!doc.contains("Result>"));
    }

    #[test]
    fn seconds_parameter_uses_aws_validation_words() {
        let p = Params::new(vec![("DurationSeconds".into(), "10".into())]);
        let e = p.seconds("DurationSeconds", "durationSeconds", (900, 129_600), 43_200);
        assert_eq!(
            e.unwrap_err().to_string(),
            "1 validation error detected: Value '10' at 'durationSeconds' failed to satisfy \
             constraint: Member must have value greater than or equal to 900"
        );
        let p = Params::new(vec![]);
        assert_eq!(p.seconds("D", "d", (1, 2), 2), Ok(2));
    }
}
