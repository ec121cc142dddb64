//! The sandbox emulators' HTTP/1.1 server: `hyper` (`http1`) on a tokio runtime of its own
//! thread, loopback only, one request per connection (every answer carries `Connection: close`).
//!
//! hyper parses the request (header names lower-cased) and reads the `Content-Length` body; the
//! server adds the sandbox's limits and answers malformed input itself (400, 408, 413, 431,
//! 501, 503) without calling the handler. No input can panic it, and a bad client only ever
//! costs its own connection task.

use std::convert::Infallible;
use std::future::poll_fn;
use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Incoming};
use hyper::header::{HeaderValue, CONNECTION, TRANSFER_ENCODING};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::StatusCode;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, Semaphore};
use tokio::time::Instant;
use zeroize::Zeroizing;

/// Largest request body accepted; larger ones get 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Largest request head (request line and headers); larger ones get 431.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most header lines in a request; more get 431.
const MAX_HEADERS: usize = 100;
/// Time allowed to receive the request head, from the connection's start.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Total time allowed to receive one request, head and body, from the connection's start.
const REQUEST_DEADLINE: Duration = Duration::from_secs(30);
/// Time allowed, after [`REQUEST_DEADLINE`], to write the answer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the server still reads what a client sends after the answer (see [`linger`]).
const LINGER: Duration = Duration::from_millis(500);
/// Connections served at once; more get 503.
const MAX_CONNECTIONS: usize = 256;
/// Pause after a failed accept (EMFILE, ECONNABORTED) before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// One request, as the handler sees it. Header names are lower-case; the values of one name
/// are in arrival order.
pub struct Request {
    /// The method, upper-case (`GET`, `POST`).
    pub method: String,
    /// The request target as sent: path and optional `?query`, still percent-encoded.
    pub target: String,
    /// `(name, value)` pairs, values trimmed; a name given twice appears twice.
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
    /// The HTTP status code.
    pub status: u16,
    /// Headers besides `Content-Length` and `Connection`, which the server adds.
    pub headers: Vec<(String, String)>,
    /// The body, wiped once written.
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

/// Why a request was not handed to the handler; each maps to the status the client receives.
#[derive(Debug, thiserror::Error)]
enum Refusal {
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
    #[error("too many connections")]
    Busy,
}

impl Refusal {
    fn status(&self) -> u16 {
        match self {
            Self::Malformed(_) => 400,
            Self::HeadTooLarge => 431,
            Self::BodyTooLarge(_) => 413,
            Self::TransferEncoding => 501,
            Self::Timeout => 408,
            Self::Busy => 503,
        }
    }

    fn response(&self) -> Response {
        Response::text(self.status(), &self.to_string())
    }

    /// What hyper's failure to read a request head means for the client; `None` when there
    /// is no one to answer (the peer closed or reset the connection).
    fn of_head_error(error: &hyper::Error) -> Option<Self> {
        if error.is_timeout() {
            Some(Self::Timeout)
        } else if error.is_parse_too_large() {
            Some(Self::HeadTooLarge)
        } else if error.is_parse() || error.is_incomplete_message() {
            Some(Self::Malformed("not an HTTP/1.1 request head"))
        } else {
            None
        }
    }

    /// The refusal as bytes, for the answers written outside hyper (see [`Gated`]).
    fn to_http(&self) -> Zeroizing<Vec<u8>> {
        let Response { status, body, .. } = self.response();
        let reason = StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or_default();
        let mut out = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(&body);
        Zeroizing::new(out)
    }
}

/// A response header the handler sets to have the answer held back this many milliseconds
/// (within the request's deadline): a hung endpoint, for deadline tests. Never sent.
pub const HOLD_HEADER: &str = "x-sandbox-hold-ms";

/// The handler the server calls for each well-formed request.
pub type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

/// A running server; stops accepting and joins its thread on drop. Connections still in flight
/// are closed then.
pub struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
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
        let listener = StdListener::bind(listen)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel();
        let (ready, started) = mpsc::channel();
        // The runtime is made, and dropped, on its own thread: callers may be async themselves.
        let thread = std::thread::Builder::new()
            .name(format!("sandbox-http-{}", addr.port()))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .enable_time()
                    .build();
                let runtime = match runtime {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                runtime.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(listener) => {
                            let _ = ready.send(Ok(()));
                            accept_loop(listener, handler, stopped).await;
                        }
                        Err(e) => {
                            let _ = ready.send(Err(e));
                        }
                    }
                });
            })?;
        let outcome = started
            .recv()
            .unwrap_or_else(|_| Err(io::Error::other("the sandbox server thread ended at start")));
        let server = Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        };
        outcome.map(|()| server)
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(listener: TcpListener, handler: Handler, mut stop: oneshot::Receiver<()>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                match Arc::clone(&slots).try_acquire_owned() {
                    Ok(slot) => {
                        let handler = Arc::clone(&handler);
                        tokio::spawn(async move {
                            serve(stream, handler).await;
                            drop(slot);
                        });
                    }
                    Err(_) => refuse_busy(&stream),
                }
            }
            Err(_) => tokio::time::sleep(ACCEPT_BACKOFF).await,
        }
    }
}

/// Answers 503 with one non-blocking write (it fits an empty socket buffer) and closes.
fn refuse_busy(stream: &TcpStream) {
    let _ = stream.try_write(&Refusal::Busy.to_http());
}

/// Serves the one request of a connection, then closes it.
async fn serve<T>(io: T, handler: Handler)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let deadline = Instant::now() + REQUEST_DEADLINE;
    let handed_over = Arc::new(AtomicBool::new(false));
    let service = service_fn({
        let handed_over = Arc::clone(&handed_over);
        move |request| {
            handed_over.store(true, Ordering::SeqCst);
            let handler = Arc::clone(&handler);
            Box::pin(async move { Ok::<_, Infallible>(respond(request, &handler, deadline).await) })
        }
    });
    let io = Gated {
        io,
        open: Arc::clone(&handed_over),
    };
    let mut connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_header_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS)
        .keep_alive(false)
        // A client may half-close once it has sent its request, and still read the answer.
        .half_close(true)
        .title_case_headers(true)
        .auto_date_header(false)
        // Queue the body buffers instead of copying them into hyper's own (unwiped) buffer.
        .writev(true)
        .serve_connection(TokioIo::new(io), service);
    let served = tokio::time::timeout_at(
        deadline + WRITE_TIMEOUT,
        poll_fn(|cx| connection.poll_without_shutdown(cx)),
    )
    .await;
    let Ok(served) = served else { return };
    let mut io = connection.into_parts().io.into_inner().io;
    if let Err(error) = served {
        if !handed_over.load(Ordering::SeqCst) {
            if let Some(refusal) = Refusal::of_head_error(&error) {
                let answer = refusal.to_http();
                let _ = tokio::time::timeout(WRITE_TIMEOUT, io.write_all(&answer)).await;
            }
        }
    }
    linger(io).await;
}

/// Half-closes, then reads what the peer still sends (up to a limit) so that unread request
/// bytes do not turn the close into a reset that could destroy the answer in flight.
async fn linger<T: AsyncRead + AsyncWrite + Unpin>(mut io: T) {
    let _ = io.shutdown().await;
    let drain = async {
        let mut sink = [0u8; 4096];
        let mut drained = 0usize;
        while drained < 4 * MAX_BODY_BYTES {
            match io.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// A connection whose writes are dropped until the request is handed to the handler: hyper's
/// own answers to a malformed head carry no `Connection: close`, and it answers none to a
/// head that times out, so [`serve`] writes those refusals itself once hyper is done.
struct Gated<T> {
    io: T,
    open: Arc<AtomicBool>,
}

impl<T> Gated<T> {
    fn is_open(&self) -> bool {
        self.open.load(Ordering::SeqCst)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Gated<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Gated<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if !self.is_open() {
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if !self.is_open() {
            return Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()));
        }
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.is_open() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.is_open() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

async fn respond(
    request: hyper::Request<Incoming>,
    handler: &Handler,
    deadline: Instant,
) -> hyper::Response<Full<Wiped>> {
    let response = match read_request(request, deadline).await {
        Ok(request) => handler(&request),
        Err(refusal) => refusal.response(),
    };
    let Response {
        status,
        mut headers,
        body,
    } = response;
    if let Some(at) = headers.iter().position(|(name, _)| name == HOLD_HEADER) {
        let (_, ms) = headers.remove(at);
        let hold = Duration::from_millis(ms.parse().unwrap_or(0));
        tokio::time::sleep_until((Instant::now() + hold).min(deadline)).await;
    }
    let mut builder = hyper::Response::builder().status(status);
    for (name, value) in &headers {
        builder = builder.header(name, value);
    }
    builder
        .header(CONNECTION, "close")
        .body(Full::new(Wiped {
            bytes: body,
            sent: 0,
        }))
        .unwrap_or_else(|_| {
            let mut broken = hyper::Response::new(Full::new(Wiped {
                bytes: Zeroizing::new(Vec::new()),
                sent: 0,
            }));
            *broken.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            broken
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
            broken
        })
}

/// The sandbox's checks on what hyper parsed, then the body, read by `deadline`.
async fn read_request(
    request: hyper::Request<Incoming>,
    deadline: Instant,
) -> Result<Request, Refusal> {
    let (head, mut body) = request.into_parts();
    if head.headers.contains_key(TRANSFER_ENCODING) {
        return Err(Refusal::TransferEncoding);
    }
    let method = head.method.as_str();
    if !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(Refusal::Malformed("bad method"));
    }
    let target = head
        .uri
        .path_and_query()
        .map(|t| t.as_str())
        .filter(|t| head.uri.scheme().is_none() && t.starts_with('/'))
        .ok_or(Refusal::Malformed(
            "request target must be an absolute path",
        ))?;
    let mut headers = Vec::with_capacity(head.headers.len());
    for (name, value) in &head.headers {
        let value = value
            .to_str()
            .map_err(|_| Refusal::Malformed("non-ASCII bytes in the request head"))?;
        headers.push((
            name.as_str().to_owned(),
            value.trim_matches([' ', '\t']).to_owned(),
        ));
    }
    let length = body.size_hint().exact().unwrap_or_default();
    if length > MAX_BODY_BYTES as u64 {
        return Err(Refusal::BodyTooLarge(length));
    }
    // Sized once (≤ MAX_BODY_BYTES): growing would leave unwiped copies behind.
    let mut bytes = Zeroizing::new(Vec::with_capacity(MAX_BODY_BYTES.min(length as usize)));
    while let Some(frame) = tokio::time::timeout_at(deadline, body.frame())
        .await
        .map_err(|_| Refusal::Timeout)?
    {
        let frame = frame.map_err(|_| Refusal::Malformed("connection closed inside the body"))?;
        if let Ok(data) = frame.into_data() {
            if bytes.len() + data.len() > MAX_BODY_BYTES {
                return Err(Refusal::BodyTooLarge((bytes.len() + data.len()) as u64));
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok(Request {
        method: method.to_owned(),
        target: target.to_owned(),
        headers,
        body: bytes,
    })
}

/// A response body that hyper writes from (vectored, without a copy) and that is wiped when
/// hyper drops it.
struct Wiped {
    bytes: Zeroizing<Vec<u8>>,
    sent: usize,
}

impl hyper::body::Buf for Wiped {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.sent
    }

    fn chunk(&self) -> &[u8] {
        &self.bytes[self.sent..]
    }

    fn advance(&mut self, count: usize) {
        self.sent = self.sent.saturating_add(count).min(self.bytes.len());
    }
}

/// Decodes one `application/x-www-form-urlencoded` name or value: `+` is a space, `%XX` a
/// byte. `None` on a malformed escape (which `percent-encoding` would pass through as text) or
/// when the result is not UTF-8.
fn form_decode(raw: &str) -> Option<String> {
    let escapes_ok = raw.split('%').skip(1).all(|after| {
        after
            .as_bytes()
            .get(..2)
            .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    });
    if !escapes_ok {
        return None;
    }
    let spaced = Zeroizing::new(raw.replace('+', " "));
    // Sized once: growing would leave unwiped copies behind.
    let mut bytes = Vec::with_capacity(spaced.len());
    bytes.extend(percent_encoding::percent_decode_str(&spaced));
    String::from_utf8(bytes).ok()
}

/// Parses an `application/x-www-form-urlencoded` string into UTF-8 pairs, in order.
pub fn parse_form(s: &str) -> Option<Vec<(String, String)>> {
    s.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((form_decode(k)?, form_decode(v)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// What the handler saw: method, path, query, header `x-y`, body.
    type Seen = (String, String, String, Option<String>, Vec<u8>);

    /// Sends `raw` on a fresh connection, half-closes, returns the answer and what the handler saw.
    async fn exchange(raw: &[u8]) -> (String, Option<Seen>) {
        let seen = Arc::new(Mutex::new(None));
        let handler: Handler = Arc::new({
            let seen = Arc::clone(&seen);
            move |r: &Request| {
                *seen.lock().unwrap() = Some((
                    r.method.clone(),
                    r.path().to_owned(),
                    r.query().to_owned(),
                    r.header("x-y").map(str::to_owned),
                    r.body.to_vec(),
                ));
                Response::text(200, "ok")
            }
        });
        let (mut client, server) = tokio::io::duplex(4 * MAX_BODY_BYTES);
        let served = tokio::spawn(serve(server, handler));
        client.write_all(raw).await.unwrap();
        client.shutdown().await.unwrap();
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        served.await.unwrap();
        let seen = seen.lock().unwrap().take();
        (String::from_utf8_lossy(&answer).into_owned(), seen)
    }

    async fn status(raw: &[u8]) -> String {
        let (answer, seen) = exchange(raw).await;
        assert!(seen.is_none(), "the handler was called for {raw:?}");
        assert!(answer.contains("Connection: close"), "{answer}");
        answer.get(..12).unwrap_or_default().to_owned()
    }

    #[tokio::test]
    async fn reads_a_request_with_body_and_lowercases_headers() {
        let (answer, seen) = exchange(
            b"POST /?a=b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nX-Y:  z \r\n\r\nabcdef",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
        assert!(answer.contains("Connection: close"), "{answer}");
        let (method, path, query, x_y, body) = seen.unwrap();
        assert_eq!(method, "POST");
        assert_eq!(path, "/");
        assert_eq!(query, "a=b");
        assert_eq!(x_y.as_deref(), Some("z"));
        assert_eq!(body, b"abc");
    }

    #[tokio::test]
    async fn rejects_malformed_and_oversized_requests() {
        assert_eq!(status(b"GARBAGE\r\n\r\n").await, "HTTP/1.1 400");
        assert_eq!(exchange(b"").await, (String::new(), None));
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost").await, "HTTP/1.1 400");
        let (answer, _) = exchange(b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
        assert!(
            answer.contains("request body of 99999999 bytes"),
            "{answer}"
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab").await,
            "HTTP/1.1 400"
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").await,
            "HTTP/1.1 501"
        );
        let mut huge = b"GET / HTTP/1.1\r\nX: ".to_vec();
        huge.extend(std::iter::repeat_n(b'a', MAX_HEAD_BYTES + 10));
        assert_eq!(status(&huge).await, "HTTP/1.1 431");
        assert_eq!(status(b"get / HTTP/1.1\r\n\r\n").await, "HTTP/1.1 400");
        assert_eq!(
            status(b"GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n").await,
            "HTTP/1.1 400"
        );
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nX: \xff\r\n\r\n").await,
            "HTTP/1.1 400"
        );
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
        assert_eq!(parse_form("a=%2B+").unwrap()[0].1, "+ ");
    }
}
