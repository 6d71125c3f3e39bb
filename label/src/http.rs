//! The pages' HTTP front, on 127.0.0.1 only, written for a browser that
//! also visits other web sites: every request is read as hostile.
//!
//! - One thread per connection, at most [`Limits::connections`] at once;
//!   every read and write has a timeout and the request a deadline, so a
//!   stalled or greedy socket holds one thread for seconds and never the
//!   tab that is labelling. One request per connection (`Connection:
//!   close`): pipelined requests behind it are never read.
//! - Headers and body are bounded ([`Limits`]); a body must announce its
//!   length (no chunked uploads).
//! - `Host` must be this server's own (127.0.0.1 or localhost with its
//!   port): a DNS-rebound name is refused before anything is answered.
//! - A write (`POST`) must come from the page itself: its `Origin` is this
//!   server's, its type `application/json` (which no form and no `no-cors`
//!   fetch can send), and it carries the session's token, which only the
//!   page served here holds. Requests a browser marks cross-site are
//!   refused on every route but the page itself.
//!
//! What a request means is the caller's ([`Handler`]); this module only
//! decides whether it is let in, and writes the answer.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a connection may take.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections answered at once; more are closed at once.
    pub connections: usize,
    /// Request line and headers, bytes.
    pub head: usize,
    /// Body, bytes (a decision is a few dozen).
    pub body: usize,
    /// Each read or write of the socket.
    pub io_timeout: Duration,
    /// The whole request, from the first byte to the last.
    pub request_deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connections: 64,
            head: 16 * 1024,
            body: 64 * 1024,
            io_timeout: Duration::from_secs(5),
            request_deadline: Duration::from_secs(10),
        }
    }
}

/// A request that was let in.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// The path, without the query.
    pub path: String,
    pub query: String,
    pub body: Vec<u8>,
}

/// An answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub mime: &'static str,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn new(status: u16, mime: &'static str, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            mime,
            body: body.into(),
        }
    }

    /// `{"error": why}` with `status`.
    pub fn error(status: u16, why: &str) -> Reply {
        Reply::new(
            status,
            "application/json",
            serde_json::json!({ "error": why }).to_string(),
        )
    }
}

/// Answers the requests that are let in; called from many threads.
pub trait Handler: Send + Sync + 'static {
    fn answer(&self, req: &Request) -> Reply;
}

/// The header the page sends its token in.
pub const TOKEN_HEADER: &str = "x-nemascope-token";

/// A bound listener.
pub struct Listener {
    listener: TcpListener,
    port: u16,
    token: String,
    limits: Limits,
    stopped: Arc<AtomicBool>,
}

/// Stops a running [`Listener`] from another thread.
#[derive(Clone)]
pub struct Stopper {
    stopped: Arc<AtomicBool>,
    port: u16,
}

impl Stopper {
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        // Wakes the accept loop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

impl Listener {
    /// Binds 127.0.0.1:`port` (0: any free port); writes must carry
    /// `token` ([`new_token`] makes one).
    pub fn bind(port: u16, limits: Limits, token: String) -> std::io::Result<Listener> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        let port = listener.local_addr()?.port();
        Ok(Listener {
            listener,
            port,
            token,
            limits,
            stopped: Arc::new(AtomicBool::new(false)),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The secret the page must send with every write.
    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn stopper(&self) -> Stopper {
        Stopper {
            stopped: self.stopped.clone(),
            port: self.port,
        }
    }

    /// Answers connections until stopped.
    pub fn run(&self, handler: Arc<dyn Handler>) {
        let active = Arc::new(AtomicUsize::new(0));
        for conn in self.listener.incoming() {
            if self.stopped.load(Ordering::SeqCst) {
                break;
            }
            let Ok(stream) = conn else { continue };
            if active.load(Ordering::SeqCst) >= self.limits.connections {
                // Over the limit: closed at once, nothing read.
                let _ = stream.shutdown(Shutdown::Both);
                continue;
            }
            active.fetch_add(1, Ordering::SeqCst);
            let (handler, count) = (handler.clone(), active.clone());
            let gate = Gate {
                port: self.port,
                token: self.token.clone(),
                limits: self.limits,
            };
            let spawned = std::thread::Builder::new()
                .name("nemascope-http".into())
                .spawn(move || {
                    gate.serve(stream, handler.as_ref());
                    count.fetch_sub(1, Ordering::SeqCst);
                });
            if spawned.is_err() {
                active.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }
}

/// 128 bits from the operating system, as hex.
pub fn new_token() -> std::io::Result<String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Who may come in, for one connection.
struct Gate {
    port: u16,
    token: String,
    limits: Limits,
}

/// Why a request was not let in: status and message.
type Refusal = (u16, String);

impl Gate {
    fn serve(&self, mut stream: TcpStream, handler: &dyn Handler) {
        let _ = stream.set_read_timeout(Some(self.limits.io_timeout));
        let _ = stream.set_write_timeout(Some(self.limits.io_timeout));
        let _ = stream.set_nodelay(true);
        let reply = match self.read(&mut stream) {
            Ok(req) => handler.answer(&req),
            Err((status, why)) => Reply::error(status, &why),
        };
        let _ = write_reply(&mut stream, &reply);
        let _ = stream.shutdown(Shutdown::Write);
    }

    /// Reads one request within the limits and checks where it comes from.
    fn read(&self, stream: &mut TcpStream) -> Result<Request, Refusal> {
        let deadline = Instant::now() + self.limits.request_deadline;
        let mut buf = Vec::with_capacity(1024);
        let head_len = loop {
            if let Some(end) = find_head_end(&buf) {
                break end;
            }
            if buf.len() >= self.limits.head {
                return Err((431, "request headers too large".into()));
            }
            let want = self.limits.head + 1 - buf.len();
            read_some(stream, &mut buf, want, deadline)?;
        };
        let mut headers = [httparse::EMPTY_HEADER; 48];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(&buf[..head_len]) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) | Err(_) => {
                return Err((400, "malformed request".into()))
            }
        }
        let method = parsed.method.unwrap_or_default().to_string();
        let target = parsed.path.unwrap_or_default().to_string();
        let header = |name: &str| -> Result<Option<String>, Refusal> {
            let mut found = parsed
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case(name));
            let first = found.next();
            if found.next().is_some() {
                return Err((400, format!("the {name} header is given twice")));
            }
            first
                .map(|h| {
                    std::str::from_utf8(h.value)
                        .map(|v| v.trim().to_string())
                        .map_err(|_| (400, format!("the {name} header is not text")))
                })
                .transpose()
        };
        self.check_host(header("host")?.as_deref())?;
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_string(), q.to_string()),
            None => (target.clone(), String::new()),
        };
        if header("sec-fetch-site")?.is_some_and(|s| s == "cross-site" || s == "same-site")
            && path != "/"
        {
            return Err((403, "requests from other web sites are refused".into()));
        }
        if header("transfer-encoding")?.is_some() {
            return Err((411, "give the body's length (Content-Length)".into()));
        }
        let length = match header("content-length")? {
            Some(v) => v
                .parse::<usize>()
                .map_err(|_| (400, "bad Content-Length".to_string()))?,
            None => 0,
        };
        match method.as_str() {
            "GET" | "HEAD" => {}
            "POST" => self.check_write(
                header("origin")?.as_deref(),
                header("content-type")?.as_deref(),
                header(TOKEN_HEADER)?.as_deref(),
            )?,
            _ => return Err((405, format!("method {method} is not answered here"))),
        }
        if length > self.limits.body {
            return Err((413, "request too large".into()));
        }
        let mut body = buf.split_off(head_len);
        if body.len() > length {
            body.truncate(length);
        }
        while body.len() < length {
            let want = length - body.len();
            read_some(stream, &mut body, want, deadline)?;
        }
        Ok(Request {
            method,
            path,
            query,
            body,
        })
    }

    /// `Host` must name this server: a page on another name that a DNS
    /// server re-points at 127.0.0.1 gets nothing.
    fn check_host(&self, host: Option<&str>) -> Result<(), Refusal> {
        let ok = host.is_some_and(|h| {
            let h = h.to_ascii_lowercase();
            [
                format!("127.0.0.1:{}", self.port),
                format!("localhost:{}", self.port),
            ]
            .contains(&h)
        });
        if ok {
            Ok(())
        } else {
            Err((
                421,
                format!(
                    "this server answers only http://127.0.0.1:{}/ (Host was {})",
                    self.port,
                    host.unwrap_or("missing")
                ),
            ))
        }
    }

    /// A write comes from this server's own page, as JSON, with the token.
    fn check_write(
        &self,
        origin: Option<&str>,
        content_type: Option<&str>,
        token: Option<&str>,
    ) -> Result<(), Refusal> {
        let own = [
            format!("http://127.0.0.1:{}", self.port),
            format!("http://localhost:{}", self.port),
        ];
        if !origin.is_some_and(|o| own.iter().any(|x| x.eq_ignore_ascii_case(o))) {
            return Err((
                403,
                format!(
                    "writes are taken only from this server's own page (Origin was {})",
                    origin.unwrap_or("missing")
                ),
            ));
        }
        let json = content_type.is_some_and(|t| {
            t.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
        if !json {
            return Err((
                415,
                "writes are JSON (Content-Type: application/json)".into(),
            ));
        }
        if !token.is_some_and(|t| constant_time_eq(t.as_bytes(), self.token.as_bytes())) {
            return Err((
                403,
                "this page's session is not the server's: reload the page".into(),
            ));
        }
        Ok(())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Reads up to `max` more bytes, before `deadline`.
fn read_some(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    max: usize,
    deadline: Instant,
) -> Result<(), Refusal> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err((408, "the request took too long".into()));
    }
    let current = stream.read_timeout().ok().flatten().unwrap_or(left);
    let _ = stream.set_read_timeout(Some(current.min(left)));
    let mut chunk = [0u8; 8192];
    let want = max.min(chunk.len());
    match stream.read(&mut chunk[..want]) {
        Ok(0) => Err((400, "the request ended early".into())),
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(())
        }
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Err((408, "the request took too long".into()))
        }
        Err(e) => Err((400, format!("cannot read the request: {e}"))),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        421 => "Misdirected Request",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// Writes the answer with the headers every answer carries: not cached,
/// not sniffed, never framed by another site, scripts only from here.
fn write_reply(stream: &mut TcpStream, r: &Reply) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n\
         X-Content-Type-Options: nosniff\r\nX-Frame-Options: DENY\r\nReferrer-Policy: no-referrer\r\n\
         Content-Security-Policy: default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
         frame-ancestors 'none'; form-action 'none'; base-uri 'none'\r\nConnection: close\r\n\r\n",
        r.status,
        reason(r.status),
        r.mime,
        r.body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(&r.body)?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo;
    impl Handler for Echo {
        fn answer(&self, req: &Request) -> Reply {
            Reply::new(
                200,
                "text/plain",
                format!(
                    "{} {} {}",
                    req.method,
                    req.path,
                    String::from_utf8_lossy(&req.body)
                ),
            )
        }
    }

    fn start(limits: Limits) -> (u16, String, Stopper, std::thread::JoinHandle<()>) {
        let l = Listener::bind(0, limits, new_token().unwrap()).unwrap();
        let (port, token, stop) = (l.port(), l.token().to_string(), l.stopper());
        let join = std::thread::spawn(move || l.run(Arc::new(Echo)));
        (port, token, stop, join)
    }

    fn ask(port: u16, raw: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(raw.as_bytes()).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    #[test]
    fn only_the_own_page_may_write_and_only_to_its_own_host() {
        let (port, token, stop, join) = start(Limits::default());
        let post = |host: &str, origin: &str, ty: &str, tok: &str| {
            ask(
                port,
                &format!("POST /api/decide HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\nContent-Type: {ty}\r\nX-Nemascope-Token: {tok}\r\nContent-Length: 2\r\n\r\n{{}}"),
            )
        };
        let own = format!("127.0.0.1:{port}");
        let origin = format!("http://{own}");
        assert!(post(&own, &origin, "application/json", &token).starts_with("HTTP/1.1 200"));
        let refused = [
            post(&own, "http://evil.example", "application/json", &token),
            post(&own, "null", "application/json", &token),
            post(&own, &origin, "text/plain", &token),
            post(&own, &origin, "application/x-www-form-urlencoded", &token),
            post(&own, &origin, "application/json", "guess"),
            post(
                &format!("evil.example:{port}"),
                &origin,
                "application/json",
                &token,
            ),
        ];
        for r in &refused {
            assert!(!r.starts_with("HTTP/1.1 200"), "{r}");
            assert!(!r.contains("POST /api/decide"), "{r}");
        }
        let rebound = ask(
            port,
            &format!("GET /api/state HTTP/1.1\r\nHost: evil.example:{port}\r\n\r\n"),
        );
        assert!(rebound.starts_with("HTTP/1.1 421"), "{rebound}");
        let cross = ask(
            port,
            &format!(
                "GET /api/state HTTP/1.1\r\nHost: {own}\r\nSec-Fetch-Site: cross-site\r\n\r\n"
            ),
        );
        assert!(cross.starts_with("HTTP/1.1 403"), "{cross}");
        let missing_origin = ask(port, &format!("POST /api/undo HTTP/1.1\r\nHost: {own}\r\nContent-Type: application/json\r\nX-Nemascope-Token: {token}\r\nContent-Length: 0\r\n\r\n"));
        assert!(
            missing_origin.starts_with("HTTP/1.1 403"),
            "{missing_origin}"
        );
        let big = ask(port, &format!("POST /x HTTP/1.1\r\nHost: {own}\r\nOrigin: {origin}\r\nContent-Type: application/json\r\nX-Nemascope-Token: {token}\r\nContent-Length: 999999\r\n\r\n"));
        assert!(big.starts_with("HTTP/1.1 413"), "{big}");
        let chunked = ask(port, &format!("POST /x HTTP/1.1\r\nHost: {own}\r\nOrigin: {origin}\r\nContent-Type: application/json\r\nX-Nemascope-Token: {token}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"));
        assert!(chunked.starts_with("HTTP/1.1 411"), "{chunked}");
        let huge_head = ask(
            port,
            &format!(
                "GET / HTTP/1.1\r\nHost: {own}\r\nX: {}\r\n\r\n",
                "a".repeat(20_000)
            ),
        );
        assert!(huge_head.starts_with("HTTP/1.1 431"), "{huge_head}");
        stop.stop();
        join.join().unwrap();
    }

    #[test]
    fn a_stalled_socket_does_not_hold_up_others() {
        let limits = Limits {
            io_timeout: Duration::from_millis(300),
            request_deadline: Duration::from_millis(600),
            ..Limits::default()
        };
        let (port, token, stop, join) = start(limits);
        let own = format!("127.0.0.1:{port}");
        // One stops in the middle of its headers; one announces a body of
        // 2000 bytes, sends 10; both stay open.
        let mut slow_head = TcpStream::connect(("127.0.0.1", port)).unwrap();
        slow_head
            .write_all(format!("POST /api/decide HTTP/1.1\r\nHost: {own}\r\n").as_bytes())
            .unwrap();
        let mut slow_body = TcpStream::connect(("127.0.0.1", port)).unwrap();
        slow_body
            .write_all(format!("POST /api/decide HTTP/1.1\r\nHost: {own}\r\nOrigin: http://{own}\r\nContent-Type: application/json\r\nX-Nemascope-Token: {token}\r\nContent-Length: 2000\r\n\r\n0123456789").as_bytes())
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let t = Instant::now();
        let r = ask(port, &format!("GET /x HTTP/1.1\r\nHost: {own}\r\n\r\n"));
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        assert!(
            t.elapsed() < Duration::from_millis(250),
            "{:?}",
            t.elapsed()
        );
        // Each is answered and closed once its deadline passes.
        for mut s in [slow_head, slow_body] {
            let mut rest = String::new();
            s.read_to_string(&mut rest).unwrap();
            assert!(rest.starts_with("HTTP/1.1 408"), "{rest}");
        }
        stop.stop();
        join.join().unwrap();
    }
}
