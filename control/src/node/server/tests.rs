//! The server's limits on real loopback sockets: slow clients, idle crowds, tokens, bodies,
//! streams whose client left or stopped reading.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use super::*;

const TEST_LIMITS: Limits = Limits {
    connections: 8,
    head: Duration::from_millis(500),
    request: Duration::from_secs(2),
    stall: Duration::from_millis(500),
};

/// Counts streams alive (dropped when the server lets go of them).
struct Alive(Arc<AtomicUsize>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn start(
    limits: Limits,
    access: Access,
    alive: Arc<AtomicUsize>,
) -> (HttpRuntime, Serving, SocketAddr) {
    let runtime = HttpRuntime::start("fp-test-http").unwrap();
    let bound = Bound::tcp("test", "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = bound.local_addr().unwrap();
    let handler: Handler = Arc::new(move |head: &Head| match head.path.as_str() {
        "/hello" => Reply::text(
            200,
            format!("hello {}\n", head.param("name").unwrap_or_default()),
        ),
        "/forever" | "/big" => {
            alive.fetch_add(1, Ordering::SeqCst);
            let guard = Alive(Arc::clone(&alive));
            let big = head.path == "/big";
            let chunk = Bytes::from(vec![b'x'; if big { 1 << 20 } else { 1 }]);
            let body = polled_stream(guard, Duration::from_millis(20), move |_| {
                Some(big.then(|| chunk.clone()))
            });
            Reply::stream("text/plain", body)
        }
        _ => Reply::text(404, "not found\n"),
    });
    let serving = runtime.serve(bound, limits, access, handler).unwrap();
    (runtime, serving, addr)
}

/// Sends `request` and reads the whole answer (the server closes after it).
fn exchange(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_slow_client_does_not_delay_another_and_is_cut_at_the_head_deadline() {
    let (_rt, _serving, addr) = start(TEST_LIMITS, Access::Open, Arc::default());
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let answer = exchange(addr, "GET /hello?name=a%20b HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert!(answer.ends_with("\r\n\r\nhello a b\n"), "{answer}");
    // The slow one never finished its head: closed after `head`.
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    let text = String::from_utf8_lossy(&rest);
    assert!(
        rest.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
}

#[test]
fn a_full_listener_replaces_its_oldest_idle_connection_and_refuses_past_busy_ones() {
    let limits = Limits {
        connections: 3,
        head: Duration::from_secs(30),
        ..TEST_LIMITS
    };
    let alive = Arc::new(AtomicUsize::new(0));
    let (_rt, _serving, addr) = start(limits, Access::Open, Arc::clone(&alive));
    let mut idle: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(100));
    // Full of connections that never asked: a real request takes the oldest one's place.
    let answer = exchange(addr, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    idle[0]
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = Vec::new();
    assert_eq!(
        idle[0].read_to_end(&mut buf).map(|_| buf.len()).ok(),
        Some(0),
        "the oldest idle one is closed"
    );
    // Full of streams (past their heads): a new connection is closed at once.
    idle.clear();
    let streams: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /forever HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            s
        })
        .collect();
    wait_until("three streams", || alive.load(Ordering::SeqCst) == 3);
    let mut extra = TcpStream::connect(addr).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let _ = extra.write_all(b"GET /hello HTTP/1.1\r\n\r\n");
    let mut buf = Vec::new();
    let _ = extra.read_to_end(&mut buf);
    assert!(
        buf.is_empty(),
        "over the cap: {}",
        String::from_utf8_lossy(&buf)
    );
    drop(streams);
    wait_until("the streams ended with their clients", || {
        alive.load(Ordering::SeqCst) == 0
    });
    let answer = exchange(addr, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
}

#[test]
fn the_token_is_checked_before_any_body_and_bodies_are_refused() {
    let access = Access::Bearer("s3cret-token-0123456789".into());
    let (_rt, _serving, addr) = start(TEST_LIMITS, access, Arc::default());
    // A huge declared body and no body bytes at all: the 401 comes from the head alone.
    let answer = exchange(
        addr,
        "POST /hello HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\nContent-Length: 1000000000\r\n\r\n",
    );
    assert!(
        answer.starts_with("HTTP/1.1 401 Unauthorized\r\n"),
        "{answer}"
    );
    assert!(
        answer.contains("www-authenticate: Bearer realm=\"ferroplane\""),
        "{answer}"
    );
    let answer = exchange(
        addr,
        "GET /hello HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret-token-0123456789\r\nContent-Length: 1000000000\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    let answer = exchange(
        addr,
        "GET /hello HTTP/1.1\r\nHost: x\r\nAuthorization: bearer s3cret-token-0123456789\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
}

#[test]
fn a_stream_ends_when_its_client_leaves_or_stops_reading() {
    let alive = Arc::new(AtomicUsize::new(0));
    let (_rt, _serving, addr) = start(TEST_LIMITS, Access::Open, Arc::clone(&alive));
    // A client that leaves while nothing is being sent.
    let mut gone = TcpStream::connect(addr).unwrap();
    gone.write_all(b"GET /forever HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    wait_until("the stream did not start", || {
        alive.load(Ordering::SeqCst) == 1
    });
    let mut head = [0u8; 64];
    let n = gone.read(&mut head).unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 200 OK"));
    drop(gone);
    wait_until("the stream outlived its client", || {
        alive.load(Ordering::SeqCst) == 0
    });
    // A client that never reads a fast stream: its writes stall, the stream is ended.
    let mut stuck = TcpStream::connect(addr).unwrap();
    stuck
        .write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    wait_until("the big stream did not start", || {
        alive.load(Ordering::SeqCst) == 1
    });
    wait_until("a stream nobody reads was not ended", || {
        alive.load(Ordering::SeqCst) == 0
    });
    drop(stuck);
}

#[test]
fn query_parameters_are_percent_decoded() {
    let head = Head {
        method: "GET".to_owned(),
        path: "/capture".to_owned(),
        query: "port=default%2Fweb&x&port=b+c".to_owned(),
    };
    assert_eq!(head.param("port").as_deref(), Some("default/web"));
    assert_eq!(
        head.params("port").collect::<Vec<_>>(),
        vec!["default/web", "b c"]
    );
    assert_eq!(head.param("x").as_deref(), Some(""));
    assert_eq!(head.param("y"), None);
}
