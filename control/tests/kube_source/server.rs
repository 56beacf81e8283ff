//! A stand-in Kubernetes API server on 127.0.0.1 that replays recorded responses: list
//! requests get the recorded `*List` JSON, watch requests (`?watch=...`) get a chunked stream
//! that stays open and carries whatever events the test pushes, one JSON object per line, as
//! the real API server writes them. Every request is logged for assertions.
//!
//! Each connection is answered once and closed (`Connection: close`); the client opens a new
//! one per request.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The collection paths the source lists and watches.
pub const NAMESPACES: &str = "/api/v1/namespaces";
pub const NODES: &str = "/api/v1/nodes";
pub const PODS: &str = "/api/v1/pods";
pub const SERVICES: &str = "/api/v1/services";
pub const ENDPOINT_SLICES: &str = "/apis/discovery.k8s.io/v1/endpointslices";
pub const NETWORK_POLICIES: &str = "/apis/networking.k8s.io/v1/networkpolicies";

/// One request the server received.
#[derive(Clone, Debug)]
pub struct Request {
    pub path: String,
    pub query: String,
}

impl Request {
    pub fn is_watch(&self) -> bool {
        self.param("watch").is_some_and(|v| v == "true" || v == "1")
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value)
    }
}

/// What an open watch stream does next.
enum WatchStep {
    /// Send one event line.
    Event(Vec<u8>),
    /// Cut the connection in the middle of a chunk, as a crashed proxy or API server would.
    Break,
}

#[derive(Default)]
struct State {
    /// The list response per path.
    lists: HashMap<String, Vec<u8>>,
    /// Paths whose list requests wait until released.
    held: Vec<String>,
    watch_steps: HashMap<String, VecDeque<WatchStep>>,
    /// Error responses (status code, body) for the next watch requests per path.
    watch_failures: HashMap<String, VecDeque<(u16, Vec<u8>)>>,
    requests: Vec<Request>,
    stopping: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }
}

/// The running server; stops (and cuts open watches) when dropped.
pub struct RecordedApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl RecordedApi {
    /// Serves the recorded lists of `dir` (`namespaces.json`, `pods.json`, ...).
    pub fn start(dir: &Path) -> RecordedApi {
        let shared = Arc::new(Shared::default());
        for (path, file) in [
            (NAMESPACES, "namespaces.json"),
            (NODES, "nodes.json"),
            (PODS, "pods.json"),
            (SERVICES, "services.json"),
            (ENDPOINT_SLICES, "endpointslices.json"),
            (NETWORK_POLICIES, "networkpolicies.json"),
        ] {
            let body = std::fs::read(dir.join(file)).unwrap();
            shared.lock().lists.insert(path.to_owned(), body);
        }
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepting = Arc::clone(&shared);
        thread::spawn(move || {
            for stream in listener.incoming() {
                if accepting.lock().stopping {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let shared = Arc::clone(&accepting);
                thread::spawn(move || serve(&shared, stream));
            }
        });
        RecordedApi { addr, shared }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves `body` to list requests for `path` from now on.
    pub fn replace_list(&self, path: &str, body: Vec<u8>) {
        self.shared.lock().lists.insert(path.to_owned(), body);
    }

    /// Makes list requests for `path` wait until [`RecordedApi::release_lists`].
    pub fn hold_lists(&self, path: &str) {
        self.shared.lock().held.push(path.to_owned());
    }

    pub fn release_lists(&self, path: &str) {
        self.shared.lock().held.retain(|p| p != path);
        self.shared.changed.notify_all();
    }

    /// Answers the next `count` watch requests for `path` with `code` and the Status `body`.
    pub fn fail_watches(&self, path: &str, count: usize, code: u16, body: &[u8]) {
        let mut state = self.shared.lock();
        let failures = state.watch_failures.entry(path.to_owned()).or_default();
        failures.extend(std::iter::repeat_n((code, body.to_vec()), count));
    }

    /// Sends a watch event (any JSON, written as one line) on the watch stream of `path`.
    pub fn push_event(&self, path: &str, event: &Value) {
        let mut line = serde_json::to_vec(event).unwrap();
        line.push(b'\n');
        self.push(path, WatchStep::Event(line));
    }

    /// Cuts the watch stream of `path` in the middle of a chunk.
    pub fn break_watch(&self, path: &str) {
        self.push(path, WatchStep::Break);
    }

    fn push(&self, path: &str, step: WatchStep) {
        let mut state = self.shared.lock();
        state
            .watch_steps
            .entry(path.to_owned())
            .or_default()
            .push_back(step);
        drop(state);
        self.shared.changed.notify_all();
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.lock().requests.clone()
    }

    /// The watch requests for `path` so far.
    pub fn watches_of(&self, path: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path && r.is_watch())
            .collect()
    }

    /// Waits up to 20 s for `count` watch requests on `path`.
    pub fn wait_for_watches(&self, path: &str, count: usize) -> Vec<Request> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let watches = self.watches_of(path);
            if watches.len() >= count || Instant::now() > deadline {
                return watches;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for RecordedApi {
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.changed.notify_all();
        // Wake the accept loop so it sees `stopping`.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Answers one request.
fn serve(shared: &Shared, mut stream: TcpStream) {
    let Some(request) = read_request(&stream) else {
        return;
    };
    shared.lock().requests.push(request.clone());
    if request.is_watch() {
        let failure = shared
            .lock()
            .watch_failures
            .get_mut(&request.path)
            .and_then(VecDeque::pop_front);
        match failure {
            Some((code, body)) => {
                let _ = stream.write_all(&respond(code, "Error", &body));
            }
            None => serve_watch(shared, &request.path, stream),
        }
        return;
    }
    let body = {
        let mut state = shared.lock();
        while state.held.contains(&request.path) && !state.stopping {
            state = shared.changed.wait(state).unwrap();
        }
        state.lists.get(&request.path).cloned()
    };
    let response = match body {
        Some(body) => respond(200, "OK", &body),
        None => respond(404, "Not Found", NOT_FOUND),
    };
    let _ = stream.write_all(&response);
}

const NOT_FOUND: &[u8] = br#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"the server could not find the requested resource","reason":"NotFound","code":404}"#;

fn respond(code: u16, reason: &str, body: &[u8]) -> Vec<u8> {
    let mut response = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(body);
    response
}

/// Streams the events pushed for `path` as chunks until the server stops or the test breaks
/// the stream.
fn serve_watch(shared: &Shared, path: &str, mut stream: TcpStream) {
    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    if stream.write_all(head.as_bytes()).is_err() {
        return;
    }
    loop {
        let step = {
            let mut state = shared.lock();
            loop {
                if state.stopping {
                    return;
                }
                if let Some(step) = state
                    .watch_steps
                    .get_mut(path)
                    .and_then(VecDeque::pop_front)
                {
                    break step;
                }
                state = shared.changed.wait(state).unwrap();
            }
        };
        match step {
            WatchStep::Event(line) => {
                let mut chunk = format!("{:x}\r\n", line.len()).into_bytes();
                chunk.extend_from_slice(&line);
                chunk.extend_from_slice(b"\r\n");
                if stream.write_all(&chunk).is_err() {
                    return;
                }
            }
            WatchStep::Break => {
                let _ = stream.write_all(b"40\r\n{\"type\":\"MODI");
                let _ = stream.shutdown(std::net::Shutdown::Both);
                return;
            }
        }
    }
}

/// Reads the request line and headers (the client sends no body with GET).
fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let target = line.split_whitespace().nth(1)?.to_owned();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 || header == "\r\n" {
            break;
        }
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    Some(Request {
        path: path.to_owned(),
        query: query.to_owned(),
    })
}
