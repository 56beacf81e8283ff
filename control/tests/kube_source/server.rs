//! A stand-in Kubernetes API server on 127.0.0.1 that replays recorded responses: list
//! requests get the recorded `*List` JSON, watch requests (`?watch=...`) get a chunked stream
//! that stays open and carries whatever events the test pushes, one JSON object per line, as
//! the real API server writes them. A PATCH of a Node (`/api/v1/nodes/NAME`, JSON merge patch)
//! is applied to the Node in the served list, so a source connecting later lists the patched
//! Node. Every request is logged for assertions, a PATCH with its body.
//!
//! Each connection is answered once and closed (`Connection: close`); the client opens a new
//! one per request.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
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
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
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

    /// The PATCH requests so far.
    pub fn patches(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "PATCH")
            .collect()
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
    if request.method == "PATCH" {
        let _ = stream.write_all(&patch_node(shared, &request));
        return;
    }
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

/// Applies a merge patch of `metadata.annotations` to the listed Node the path names and
/// answers with the patched Node (404 for another path or an unknown Node).
fn patch_node(shared: &Shared, request: &Request) -> Vec<u8> {
    let Some(name) = request.path.strip_prefix(&format!("{NODES}/")) else {
        return respond(404, "Not Found", NOT_FOUND);
    };
    let Ok(patch) = serde_json::from_slice::<Value>(&request.body) else {
        return respond(400, "Bad Request", b"{}");
    };
    let mut state = shared.lock();
    let Some(list) = state.lists.get(NODES) else {
        return respond(404, "Not Found", NOT_FOUND);
    };
    let mut list: Value = serde_json::from_slice(list).unwrap();
    let Some(node) = list["items"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|n| n["metadata"]["name"] == name)
    else {
        return respond(404, "Not Found", NOT_FOUND);
    };
    let version: u64 = node["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    node["metadata"]["resourceVersion"] = Value::from((version + 1000).to_string());
    if let Some(annotations) = patch["metadata"]["annotations"].as_object() {
        let target = &mut node["metadata"]["annotations"];
        if !target.is_object() {
            *target = Value::Object(serde_json::Map::new());
        }
        for (key, value) in annotations {
            match value {
                Value::Null => target.as_object_mut().unwrap().remove(key),
                value => target
                    .as_object_mut()
                    .unwrap()
                    .insert(key.clone(), value.clone()),
            };
        }
    }
    let body = serde_json::to_vec(node).unwrap();
    state
        .lists
        .insert(NODES.to_owned(), serde_json::to_vec(&list).unwrap());
    respond(200, "OK", &body)
}

/// Reads the request line, the headers and the body (`Content-Length`, for PATCH).
fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut words = line.split_whitespace();
    let method = words.next()?.to_owned();
    let target = words.next()?.to_owned();
    let mut content_type = None;
    let mut length = 0;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 || header == "\r\n" {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let value = value.trim();
            match name.to_ascii_lowercase().as_str() {
                "content-type" => content_type = Some(value.to_owned()),
                "content-length" => length = value.parse().ok()?,
                _ => {}
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    Some(Request {
        method,
        path: path.to_owned(),
        query: query.to_owned(),
        content_type,
        body,
    })
}
