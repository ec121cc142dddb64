//! A deliberately small HTTP/1.1 server for the sandbox emulators: loopback only, one thread per
//! connection, one request per connection (every answer carries `Connection: close`).
//!
//! It parses the request line, headers (names lower-cased) and a `Content-Length` body, and
//! answers malformed input itself (400, 408, 413, 431, 501) without calling the handler. No
//! input can panic it, and a bad client only ever costs its own connection thread.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

/// Largest request body accepted; larger ones get 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Largest request head (request line and headers); larger ones get 431.
const MAX_HEAD_BYTES: usize = 16 * 1024;
const MAX_HEADERS: usize = 100;
/// Idle time allowed between two reads of one request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Total time allowed to receive one request.
const REQUEST_DEADLINE: Duration = Duration::from_secs(30);
/// Connections served at once; more get 503.
const MAX_CONNECTIONS: usize = 64;
/// How often the accept loop looks at its stop flag.
const ACCEPT_POLL: Duration = Duration::from_millis(10);

/// One parsed request. Header names are lower-case, in arrival order, duplicates kept.
pub struct Request {
    pub method: String,
    /// The request target as sent: path and optional `?query`, still percent-encoded.
    pub target: String,
    pub headers: Vec<(String, String)>,
    /// May carry one-time codes: wiped on drop.
    pub body: Zeroizing<Vec<u8>>,
}

impl Request {
    /// The first value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The path part of the target (before `?`).
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// The raw query string (after `?`), empty when there is none.
    pub fn query(&self) -> &str {
        self.target.split_once('?').map(|(_, q)| q).unwrap_or("")
    }
}

/// A response. The body may carry credentials: wiped on drop.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Zeroizing<Vec<u8>>,
}

impl Response {
    /// A plain-text response, for failures of the HTTP layer itself.
    pub fn text(status: u16, text: &str) -> Self {
        Self {
            status,
            headers: vec![("Content-Type".into(), "text/plain; charset=utf-8".into())],
            body: Zeroizing::new(format!("{text}\n").into_bytes()),
        }
    }
}

/// Why a request could not be read; each maps to the status the client receives.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The peer closed the connection before sending anything: nothing to answer.
    #[error("connection closed before a request")]
    Closed,
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    #[error("request head larger than {MAX_HEAD_BYTES} bytes")]
    HeadTooLarge,
    #[error("request body of {0} bytes exceeds {MAX_BODY_BYTES}")]
    BodyTooLarge(u64),
    #[error("transfer codings are not supported; send Content-Length")]
    TransferEncoding,
    #[error("timed out reading the request")]
    Timeout,
    #[error("i/o error reading the request: {0}")]
    Io(#[source] io::Error),
}

impl ReadError {
    fn response(&self) -> Option<Response> {
        let status = match self {
            Self::Closed | Self::Io(_) => return None,
            Self::Malformed(_) => 400,
            Self::HeadTooLarge => 431,
            Self::BodyTooLarge(_) => 413,
            Self::TransferEncoding => 501,
            Self::Timeout => 408,
        };
        Some(Response::text(status, &self.to_string()))
    }
}

/// The handler the server calls for each well-formed request.
pub type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

/// A running server; stops accepting and joins its accept thread on drop. Connections in
/// flight finish on their own threads (each within [`REQUEST_DEADLINE`] plus a write).
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `listen` (loopback addresses only; port 0 picks one) and serves `handler`.
    pub fn start(listen: SocketAddr, handler: Handler) -> io::Result<Self> {
        if !listen.ip().is_loopback() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the sandbox listens on loopback addresses only, not {listen}"),
            ));
        }
        let listener = TcpListener::bind(listen)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name(format!("sandbox-http-{}", addr.port()))
            .spawn({
                let stop = Arc::clone(&stop);
                move || accept_loop(&listener, &stop, &handler)
            })?;
        Ok(Self {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, stop: &AtomicBool, handler: &Handler) {
    let active = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => spawn_connection(stream, handler, &active),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(ACCEPT_POLL),
            // Transient accept failures (EMFILE, ECONNABORTED): back off, keep serving.
            Err(_) => std::thread::sleep(ACCEPT_POLL),
        }
    }
}

fn spawn_connection(stream: TcpStream, handler: &Handler, active: &Arc<AtomicUsize>) {
    if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
        active.fetch_sub(1, Ordering::SeqCst);
        let mut stream = stream;
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_write_timeout(Some(READ_TIMEOUT));
        let _ = write_response(&mut stream, &Response::text(503, "too many connections"));
        return;
    }
    let handler = Arc::clone(handler);
    let guard = Arc::clone(active);
    let spawned = std::thread::Builder::new()
        .name("sandbox-http-conn".into())
        .spawn(move || {
            serve_connection(stream, &handler);
            guard.fetch_sub(1, Ordering::SeqCst);
        });
    if spawned.is_err() {
        active.fetch_sub(1, Ordering::SeqCst);
    }
}

fn serve_connection(mut stream: TcpStream, handler: &Handler) {
    if stream.set_nonblocking(false).is_err()
        || stream.set_read_timeout(Some(READ_TIMEOUT)).is_err()
        || stream.set_write_timeout(Some(READ_TIMEOUT)).is_err()
    {
        return;
    }
    let _ = stream.set_nodelay(true);
    let response = match read_request(&mut stream) {
        Ok(request) => Some(handler(&request)),
        Err(e) => e.response(),
    };
    if let Some(response) = response {
        let _ = write_response(&mut stream, &response);
    }
    lingering_close(stream);
}

/// Half-closes, then reads what the peer still sends (up to a limit) so that unread request
/// bytes do not turn the close into a reset that could destroy the response in flight.
fn lingering_close(mut stream: TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut sink = [0u8; 4096];
    let mut drained = 0usize;
    while drained < 4 * MAX_BODY_BYTES {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

/// Reads one request: head, then exactly `Content-Length` body bytes.
pub fn read_request(stream: &mut impl Read) -> Result<Request, ReadError> {
    let started = Instant::now();
    let mut buf = Zeroizing::new(Vec::with_capacity(4096));
    let head_end = loop {
        if let Some(end) = find_head_end(&buf) {
            break end;
        }
        if buf.len() > MAX_HEAD_BYTES {
            return Err(ReadError::HeadTooLarge);
        }
        if read_some(stream, &mut buf, started)? == 0 {
            return Err(if buf.is_empty() {
                ReadError::Closed
            } else {
                ReadError::Malformed("connection closed inside the request head")
            });
        }
    };
    if head_end > MAX_HEAD_BYTES {
        return Err(ReadError::HeadTooLarge);
    }
    let (method, target, headers) = parse_head(&buf[..head_end])?;
    let length = body_length(&headers)?;
    let mut body = Zeroizing::new(buf[head_end + 4..].to_vec());
    while body.len() < length {
        if read_some(stream, &mut body, started)? == 0 {
            return Err(ReadError::Malformed("connection closed inside the body"));
        }
    }
    body.truncate(length);
    Ok(Request {
        method,
        target,
        headers,
        body,
    })
}

fn read_some(
    stream: &mut impl Read,
    buf: &mut Vec<u8>,
    started: Instant,
) -> Result<usize, ReadError> {
    if started.elapsed() > REQUEST_DEADLINE {
        return Err(ReadError::Timeout);
    }
    let mut chunk = Zeroizing::new([0u8; 4096]);
    match stream.read(&mut chunk[..]) {
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(n)
        }
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Err(ReadError::Timeout)
        }
        Err(e) if e.kind() == io::ErrorKind::Interrupted => read_some(stream, buf, started),
        Err(e) => Err(ReadError::Io(e)),
    }
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

type Head = (String, String, Vec<(String, String)>);

fn parse_head(head: &[u8]) -> Result<Head, ReadError> {
    let head = std::str::from_utf8(head)
        .ok()
        .filter(|h| h.is_ascii())
        .ok_or(ReadError::Malformed("non-ASCII bytes in the request head"))?;
    let mut lines = head.split("\r\n");
    let (method, target) = parse_request_line(lines.next().unwrap_or_default())?;
    let mut headers = Vec::new();
    for line in lines {
        if headers.len() >= MAX_HEADERS {
            return Err(ReadError::HeadTooLarge);
        }
        headers.push(parse_header_line(line)?);
    }
    Ok((method, target, headers))
}

fn parse_request_line(line: &str) -> Result<(String, String), ReadError> {
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::Malformed(
            "request line is not METHOD TARGET VERSION",
        ));
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(ReadError::Malformed("bad method"));
    }
    if !target.starts_with('/') || target.bytes().any(|b| b.is_ascii_control()) {
        return Err(ReadError::Malformed(
            "request target must be an absolute path",
        ));
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(ReadError::Malformed("unsupported HTTP version"));
    }
    Ok((method.to_owned(), target.to_owned()))
}

fn parse_header_line(line: &str) -> Result<(String, String), ReadError> {
    let (name, value) = line
        .split_once(':')
        .ok_or(ReadError::Malformed("header line without a colon"))?;
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) {
        return Err(ReadError::Malformed("bad header name"));
    }
    let value = value.trim_matches([' ', '\t']);
    if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
        return Err(ReadError::Malformed("control character in a header value"));
    }
    Ok((name.to_ascii_lowercase(), value.to_owned()))
}

fn body_length(headers: &[(String, String)]) -> Result<usize, ReadError> {
    if headers.iter().any(|(n, _)| n == "transfer-encoding") {
        return Err(ReadError::TransferEncoding);
    }
    let mut length: Option<u64> = None;
    for (_, value) in headers.iter().filter(|(n, _)| n == "content-length") {
        if value.is_empty() || value.len() > 19 || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ReadError::Malformed("bad Content-Length"));
        }
        let parsed: u64 = value
            .parse()
            .map_err(|_| ReadError::Malformed("bad Content-Length"))?;
        if length.is_some_and(|l| l != parsed) {
            return Err(ReadError::Malformed("conflicting Content-Length headers"));
        }
        length = Some(parsed);
    }
    let length = length.unwrap_or(0);
    if length > MAX_BODY_BYTES as u64 {
        return Err(ReadError::BodyTooLarge(length));
    }
    usize::try_from(length).map_err(|_| ReadError::BodyTooLarge(length))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        302 => "Found",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Writes `response` with `Content-Length` and `Connection: close`.
pub fn write_response(stream: &mut impl Write, response: &Response) -> io::Result<()> {
    let mut out = Zeroizing::new(Vec::with_capacity(response.body.len() + 256));
    let status = response.status;
    out.extend_from_slice(format!("HTTP/1.1 {status} {}\r\n", reason(status)).as_bytes());
    for (name, value) in &response.headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    let length = response.body.len();
    out.extend_from_slice(
        format!("Content-Length: {length}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    out.extend_from_slice(&response.body);
    stream.write_all(&out)?;
    stream.flush()
}

/// Decodes `%XX` escapes (and `+` as a space when `plus_is_space`); `None` on a bad escape.
pub fn percent_decode(s: &str, plus_is_space: bool) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(out)
}

/// Parses an `application/x-www-form-urlencoded` string into UTF-8 pairs, in order.
pub fn parse_form(s: &str) -> Option<Vec<(String, String)>> {
    s.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = String::from_utf8(percent_decode(k, true)?).ok()?;
            let v = String::from_utf8(percent_decode(v, true)?).ok()?;
            Some((k, v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(raw: &[u8]) -> Result<Request, ReadError> {
        read_request(&mut io::Cursor::new(raw.to_vec()))
    }

    #[test]
    fn reads_a_request_with_body_and_lowercases_headers() {
        let r =
            read(b"POST /?a=b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nX-Y:  z \r\n\r\nabcdef")
                .unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.path(), "/");
        assert_eq!(r.query(), "a=b");
        assert_eq!(r.header("x-y"), Some("z"));
        assert_eq!(&r.body[..], b"abc");
    }

    #[test]
    fn rejects_malformed_and_oversized_requests() {
        assert!(matches!(
            read(b"GARBAGE\r\n\r\n"),
            Err(ReadError::Malformed(_))
        ));
        assert!(matches!(read(b""), Err(ReadError::Closed)));
        assert!(matches!(
            read(b"GET / HTTP/1.1\r\nHost"),
            Err(ReadError::Malformed(_))
        ));
        assert!(matches!(
            read(b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n"),
            Err(ReadError::BodyTooLarge(99_999_999))
        ));
        assert!(matches!(
            read(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"),
            Err(ReadError::Malformed(_))
        ));
        assert!(matches!(
            read(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(ReadError::TransferEncoding)
        ));
        let mut huge = b"GET / HTTP/1.1\r\nX: ".to_vec();
        huge.extend(std::iter::repeat_n(b'a', MAX_HEAD_BYTES + 10));
        assert!(matches!(read(&huge), Err(ReadError::HeadTooLarge)));
    }

    #[test]
    fn form_decoding_handles_plus_and_escapes() {
        let form = parse_form("Action=Get&Name=a+b%2Fc&Empty=&Flag").unwrap();
        assert_eq!(form[1], ("Name".into(), "a b/c".into()));
        assert_eq!(form[2], ("Empty".into(), String::new()));
        assert_eq!(form[3], ("Flag".into(), String::new()));
        assert!(parse_form("a=%zz").is_none());
        assert!(parse_form("a=%f").is_none());
        assert!(parse_form("a=%+1").is_none());
        assert!(parse_form("a=%ff").is_none(), "not UTF-8");
    }
}
