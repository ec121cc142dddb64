//! The fault rig: a TCP proxy in front of a real upstream (the emulator, moto) whose behaviour
//! a test sets per request (pass, hang, reset, drip, canned answers, garbage), and which counts
//! what it saw, so that a test can assert "nothing reached STS". Plus a closed port and a
//! listener whose accept queue is full (connects time out).

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the proxy does with one request (one connection: it answers with `Connection: close`).
#[derive(Debug, Clone)]
pub enum Fault {
    /// Forward to the upstream and back.
    Pass,
    /// Read the request, never answer (the connection stays open until the proxy is dropped).
    Hang,
    /// Forward, then send only the first `after` bytes of the upstream's answer and reset the
    /// connection (RST, `SO_LINGER` 0).
    ResetAfter(usize),
    /// Forward, then send the upstream's answer one byte per `every`.
    Drip(Duration),
    /// Answer this HTTP status with an empty body, without forwarding.
    Status(u16),
    /// Answer 400 with STS's XML `Throttling` error, without forwarding.
    Throttle,
    /// Answer bytes that are not HTTP as soon as the client says anything (a TLS ClientHello
    /// included).
    Garbage,
    /// Answer HTTP 200 with this body (`text/xml`), without forwarding.
    Canned(String),
}

#[derive(Default)]
struct State {
    script: Mutex<VecDeque<Fault>>,
    default: Mutex<Option<Fault>>,
    connections: AtomicUsize,
    requests: AtomicUsize,
    forwarded: AtomicUsize,
    held: Mutex<Vec<TcpStream>>,
    stop: AtomicBool,
}

impl State {
    fn next_fault(&self) -> Fault {
        let scripted = self.script.lock().unwrap().pop_front();
        scripted.unwrap_or_else(|| self.default.lock().unwrap().clone().unwrap_or(Fault::Pass))
    }
}

/// The proxy, listening on 127.0.0.1 (port 0); stopped on drop.
pub struct Proxy {
    addr: SocketAddr,
    state: Arc<State>,
}

impl Proxy {
    /// A proxy to `upstream` (`None`: canned answers only; `Pass` then fails the request)
    /// doing `default` to every request not scripted with [`Proxy::then`].
    pub fn start(upstream: Option<SocketAddr>, default: Fault) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        *state.default.lock().unwrap() = Some(default);
        let st = Arc::clone(&state);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                st.connections.fetch_add(1, Ordering::SeqCst);
                let st = Arc::clone(&st);
                std::thread::spawn(move || serve(conn, upstream, &st));
            }
        });
        Self { addr, state }
    }

    /// The next request gets `fault` (scripted faults are used in order, then the default).
    pub fn then(self, fault: Fault) -> Self {
        self.state.script.lock().unwrap().push_back(fault);
        self
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `https://127.0.0.1:PORT` (for TLS faults: the proxy speaks no TLS).
    pub fn https_url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Connections accepted.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Waits (at most 5 s) until the accept loop has counted `n` connections: a client may
    /// be done before the proxy's thread has counted its connection.
    pub fn wait_for_connections(&self, n: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while self.connections() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "{} connections, expected {n}",
                self.connections()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Complete HTTP requests read.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Waits (at most 20 s) until `n` complete requests have arrived: a request is under way
    /// (a hung one stays so).
    pub fn wait_for_requests(&self, n: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while self.requests() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "{} requests, expected {n}",
                self.requests()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Requests forwarded to the upstream.
    pub fn forwarded(&self) -> usize {
        self.state.forwarded.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        for s in self.state.held.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// A port on 127.0.0.1 where nothing listens: connections are refused. The port stays bound
/// (by a socket that never listens) while this lives, so that no other test's listener can
/// take it in the meantime (a closed port number is soon handed out again by `bind(0)`).
pub struct ClosedPort {
    _bound: socket2::Socket,
    addr: SocketAddr,
}

impl ClosedPort {
    pub fn new() -> Self {
        use socket2::{Domain, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        let addr = s.local_addr().unwrap().as_socket().unwrap();
        Self { _bound: s, addr }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// A port that takes the first connection and refuses every later one: a listener and a
/// non-listening socket share the port (`SO_REUSEPORT`); [`OneConnection::accept_then_close`]
/// takes the first connection and closes the listener, the other socket keeps the port.
pub struct OneConnection {
    listener: Option<socket2::Socket>,
    _keeper: socket2::Socket,
    addr: SocketAddr,
}

impl OneConnection {
    pub fn new() -> Self {
        use socket2::{Domain, Socket, Type};
        let socket = || {
            let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
            s.set_reuse_port(true).unwrap();
            s
        };
        let listener = socket();
        listener
            .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        let addr = listener.local_addr().unwrap().as_socket().unwrap();
        let keeper = socket();
        keeper.bind(&addr.into()).unwrap();
        listener.listen(8).unwrap();
        Self {
            listener: Some(listener),
            _keeper: keeper,
            addr,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits for the first connection, closes it and the listener.
    pub fn accept_then_close(&mut self) {
        if let Some(l) = self.listener.take() {
            drop(l.accept().unwrap());
        }
    }
}

/// A listener that never accepts, with its accept queue filled: the kernel drops further
/// SYNs, so connections to it time out (a black hole, on loopback). Dropped: closed.
pub struct BlackHole {
    _listener: socket2::Socket,
    _queued: Vec<TcpStream>,
    addr: SocketAddr,
}

impl BlackHole {
    pub fn new() -> Self {
        use socket2::{Domain, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        s.listen(0).unwrap();
        let addr = s.local_addr().unwrap().as_socket().unwrap();
        // Linux queues backlog + 1 connections; a few more to be sure the queue is full. The
        // ones that do not fit time out here, which is the point.
        let queued = (0..3)
            .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_millis(100)).ok())
            .collect();
        Self {
            _listener: s,
            _queued: queued,
            addr,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Reads one HTTP request (head and `Content-Length` body). `None` if the client closed or
/// stalled first.
fn read_request(conn: &mut TcpStream, first: Vec<u8>) -> Option<Vec<u8>> {
    let mut buf = first;
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = conn.read(&mut chunk).ok().filter(|&n| n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = conn.read(&mut chunk).ok().filter(|&n| n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(buf)
}

/// `request` with `Connection: close`, so that the upstream closes after its answer.
fn with_close(request: &[u8]) -> Vec<u8> {
    let head_end = request
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(request.len());
    let head = String::from_utf8_lossy(&request[..head_end]);
    let mut out: Vec<u8> = head
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .flat_map(|l| format!("{l}\r\n").into_bytes())
        .collect();
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out.extend_from_slice(&request[(head_end + 4).min(request.len())..]);
    out
}

/// The upstream's whole answer to `request`.
fn forward(upstream: Option<SocketAddr>, request: &[u8], st: &State) -> Option<Vec<u8>> {
    let mut up = TcpStream::connect(upstream?).ok()?;
    up.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    st.forwarded.fetch_add(1, Ordering::SeqCst);
    up.write_all(&with_close(request)).ok()?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer).ok()?;
    Some(answer)
}

fn canned(status: u16, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} Canned\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// STS's throttling error, as the query protocol words it.
pub const THROTTLING_XML: &str =
    "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
<Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error>\
<RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>";

/// A GetSessionToken answer with these credentials; `None` leaves the element out.
pub fn session_xml(
    key_id: Option<&str>,
    secret: Option<&str>,
    token: Option<&str>,
    expiration: Option<&str>,
) -> String {
    let el = |name: &str, v: Option<&str>| {
        v.map(|v| format!("<{name}>{v}</{name}>"))
            .unwrap_or_default()
    };
    format!(
        "<GetSessionTokenResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
         <GetSessionTokenResult><Credentials>{}{}{}{}</Credentials></GetSessionTokenResult>\
         <ResponseMetadata><RequestId>00000000-0000-0000-0000-000000000001</RequestId>\
         </ResponseMetadata></GetSessionTokenResponse>",
        el("AccessKeyId", key_id),
        el("SecretAccessKey", secret),
        el("SessionToken", token),
        el("Expiration", expiration),
    )
}

fn serve(mut conn: TcpStream, upstream: Option<SocketAddr>, st: &State) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut first = [0u8; 4096];
    let n = match conn.read(&mut first) {
        Ok(n) if n > 0 => n,
        _ => return,
    };
    let fault = st.next_fault();
    if let Fault::Garbage = fault {
        st.requests.fetch_add(1, Ordering::SeqCst);
        let _ = conn.write_all(b"\x00\x01garbage, not HTTP\r\n\r\n\xff\xfe");
        return;
    }
    let Some(request) = read_request(&mut conn, first[..n].to_vec()) else {
        return;
    };
    st.requests.fetch_add(1, Ordering::SeqCst);
    let answer = match fault {
        Fault::Hang => {
            st.held.lock().unwrap().push(conn);
            return;
        }
        Fault::Status(code) => canned(code, "text/plain", ""),
        Fault::Throttle => canned(400, "text/xml", THROTTLING_XML),
        Fault::Canned(ref body) => canned(200, "text/xml", body),
        Fault::Pass | Fault::ResetAfter(_) | Fault::Drip(_) => {
            match forward(upstream, &request, st) {
                Some(a) => a,
                None => canned(502, "text/plain", "no upstream"),
            }
        }
        Fault::Garbage => unreachable!(),
    };
    match fault {
        Fault::ResetAfter(after) => {
            let _ = conn.write_all(&answer[..after.min(answer.len())]);
            let _ = conn.flush();
            let _ = socket2::SockRef::from(&conn).set_linger(Some(Duration::ZERO));
            // Dropped with SO_LINGER 0: the kernel sends RST.
        }
        Fault::Drip(every) => {
            for b in answer {
                if st.stop.load(Ordering::SeqCst) || conn.write_all(&[b]).is_err() {
                    return;
                }
                std::thread::sleep(every);
            }
        }
        _ => {
            let _ = conn.write_all(&answer);
        }
    }
}

/// The address of an `http://HOST:PORT` URL.
pub fn addr_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap()
}

/// A stand-in for pcscd's socket: a Unix socket that forwards every connection to the real
/// pcscd, until [`PcscdProxy::stop`] cuts them all and refuses new ones: pcscd stopping, as
/// the one process pointed at it (`PCSCLITE_CSOCK_NAME`, which libpcsclite reads) sees it,
/// while the real pcscd goes on serving the other tests.
pub struct PcscdProxy {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    conns: Arc<Mutex<Vec<std::os::unix::net::UnixStream>>>,
    stop: Arc<AtomicBool>,
}

impl PcscdProxy {
    /// The real pcscd's socket.
    const PCSCD: &'static str = "/run/pcscd/pcscd.comm";

    pub fn start() -> Self {
        use std::os::unix::net::{UnixListener, UnixStream};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pcscd.comm");
        let listener = UnixListener::bind(&path).unwrap();
        let conns: Arc<Mutex<Vec<UnixStream>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (conns.clone(), stop.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(upstream) = UnixStream::connect(Self::PCSCD) else {
                    continue;
                };
                let pipe = |mut from: UnixStream, mut to: UnixStream| {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Both);
                    });
                };
                let mut held = c.lock().unwrap();
                held.push(client.try_clone().unwrap());
                held.push(upstream.try_clone().unwrap());
                pipe(client.try_clone().unwrap(), upstream.try_clone().unwrap());
                pipe(upstream, client);
            }
        });
        Self {
            _dir: dir,
            path,
            conns,
            stop,
        }
    }

    /// The value for `PCSCLITE_CSOCK_NAME`.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// pcscd "stops": every connection is cut, the socket goes away.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::fs::remove_file(&self.path);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}
