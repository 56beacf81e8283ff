//! The little HTTP/1.1 the node process speaks: one request per connection (`Connection:
//! close`), a GET line and headers, and a response that is either whole (`Content-Length`) or
//! a stream that ends when the connection closes (`/monitor`, `/capture`).
//!
//! Invariants: a request head larger than [`MAX_HEAD`] or slower than the read timeout is
//! refused; nothing here panics on what a client sends.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Bytes of request line and headers accepted.
pub const MAX_HEAD: usize = 8192;

/// A parsed request head.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// The query string after `?`, without it.
    pub query: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of query parameter `name`, percent-decoded.
    pub fn param(&self, name: &str) -> Option<String> {
        self.query
            .split('&')
            .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| percent_decode(v))
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads a request head.
pub fn read_request(stream: impl Read) -> io::Result<Request> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let mut reader = BufReader::new(stream.take(MAX_HEAD as u64));
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), Some(_version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("malformed request line"));
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut request = Request {
        method: method.to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        headers: Vec::new(),
    };
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 {
            return Err(bad("request head not terminated"));
        }
        let header = header.trim_end();
        if header.is_empty() {
            return Ok(request);
        }
        if let Some((name, value)) = header.split_once(':') {
            request
                .headers
                .push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// Writes a whole response.
pub fn respond(
    mut out: impl Write,
    status: u16,
    content_type: &str,
    body: &[u8],
) -> io::Result<()> {
    write!(
        out,
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reason(status),
        body.len()
    )?;
    out.write_all(body)?;
    out.flush()
}

/// Writes a 401 that names the scheme the client must use (RFC 6750).
pub fn respond_unauthorized(mut out: impl Write, body: &[u8]) -> io::Result<()> {
    write!(
        out,
        "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"ferroplane\"\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    out.write_all(body)?;
    out.flush()
}

/// Starts a response whose body runs until the connection closes.
pub fn start_stream(mut out: impl Write, content_type: &str) -> io::Result<()> {
    write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n"
    )?;
    out.flush()
}

/// A connection of either listener kind.
pub trait Conn: Read + Write + Send {
    /// Whether the client has closed its end: a read that waits at most a millisecond finds
    /// end-of-file. Lets a stream notice a client that left while nothing was sent to it.
    fn peer_closed(&mut self) -> bool;
}

fn closed_after_short_read(
    conn: &mut impl Read,
    set_timeout: impl Fn(Option<Duration>) -> io::Result<()>,
) -> bool {
    if set_timeout(Some(Duration::from_millis(1))).is_err() {
        return true;
    }
    let mut byte = [0u8; 1];
    let closed = matches!(conn.read(&mut byte), Ok(0));
    let _ = set_timeout(Some(Duration::from_secs(5)));
    closed
}

impl Conn for TcpStream {
    fn peer_closed(&mut self) -> bool {
        let this = self.try_clone();
        match this {
            Ok(clone) => closed_after_short_read(self, |t| clone.set_read_timeout(t)),
            Err(_) => true,
        }
    }
}

impl Conn for UnixStream {
    fn peer_closed(&mut self) -> bool {
        let this = self.try_clone();
        match this {
            Ok(clone) => closed_after_short_read(self, |t| clone.set_read_timeout(t)),
            Err(_) => true,
        }
    }
}

/// Handles one connection's request.
pub type Handler = Arc<dyn Fn(Request, &mut dyn Conn) -> io::Result<()> + Send + Sync>;

/// Serves a TCP listener on its own thread until `stop` is set; each connection is handled on
/// the accepting thread when `inline`, else on a thread of its own (streams).
pub fn serve_tcp(
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    handler: Handler,
    inline: bool,
) -> io::Result<()> {
    std::thread::Builder::new()
        .name("fp-http".to_owned())
        .spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                // A request handled on the accepting thread must not hold it for long.
                let timeout = if inline { 1 } else { 5 };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(timeout)));
                dispatch(conn, &handler, inline);
            }
        })
        .map(drop)
}

/// Serves a Unix listener on its own thread for the life of the process.
pub fn serve_unix(listener: UnixListener, handler: Handler) -> io::Result<()> {
    std::thread::Builder::new()
        .name("fp-admin".to_owned())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                dispatch(conn, &handler, false);
            }
        })
        .map(drop)
}

fn dispatch<C: Conn + 'static>(mut conn: C, handler: &Handler, inline: bool) {
    let mut handle = move |handler: &Handler| match read_request(&mut conn) {
        Ok(request) => {
            let _ = handler(request, &mut conn);
        }
        Err(_) => {
            let _ = respond(&mut conn, 400, "text/plain", b"bad request\n");
        }
    };
    if inline {
        handle(handler);
    } else {
        let handler = Arc::clone(handler);
        let _ = std::thread::Builder::new()
            .name("fp-http-conn".to_owned())
            .spawn(move || {
                let mut handle = handle;
                handle(&handler);
            });
    }
}

/// Wakes a listener blocked in accept (after its stop flag was set) by connecting to it.
pub fn wake(addr: SocketAddr) {
    let _ = TcpStream::connect_timeout(&addr, Duration::from_millis(200));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_head_is_parsed_with_query_and_headers() {
        let raw = b"GET /capture?port=default%2Fweb&x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer t0k\r\n\r\nbody";
        let r = read_request(&raw[..]).unwrap_or_default();
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/capture");
        assert_eq!(r.param("port").as_deref(), Some("default/web"));
        assert_eq!(r.param("x").as_deref(), Some(""));
        assert_eq!(r.param("y"), None);
        assert_eq!(r.header("authorization"), Some("Bearer t0k"));
        for bad in [&b"GET\r\n\r\n"[..], b"GET / HTTP/1.1\r\nHost: a\r\n", b""] {
            assert!(read_request(bad).is_err(), "{bad:?}");
        }
        let huge = [b'a'; MAX_HEAD * 2];
        assert!(read_request(&huge[..]).is_err());
    }

    #[test]
    fn responses_carry_status_length_and_body() {
        let mut out = Vec::new();
        respond(&mut out, 503, "application/json", b"{}").unwrap_or_default();
        assert_eq!(
            String::from_utf8_lossy(&out),
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
        );
    }
}
