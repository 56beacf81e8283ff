//! The client side of the node process's admin API, for the `stats`, `conntrack`, `monitor`
//! and `capture` verbs: one GET per connection over the admin Unix socket.
//!
//! Invariant: a non-200 answer becomes an error carrying the server's message; a 200 body is
//! handed to the caller as it arrives, so streams are never buffered whole.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use crate::node::admin_socket;
use crate::store::StateDir;

/// Where the admin socket is: `--socket`; else, for `--node-name`, the path that node
/// published in the state directory (`<state>/sockets/<node>`, see
/// [`crate::node::admin_socket`]), or `/run/ferroplane/<node>.sock`; else the only socket
/// published in the state directory, or the only one in `/run/ferroplane`.
#[derive(Debug, clap::Args)]
pub struct SocketArgs {
    /// The node process's admin socket.
    #[arg(long, env = "FERROPLANE_ADMIN_SOCKET")]
    pub socket: Option<PathBuf>,
    /// Node whose socket to use: the one it published in the state directory (--state,
    /// FERROPLANE_STATE), else /run/ferroplane/NODE.sock.
    #[arg(long, env = "FERROPLANE_NODE_NAME")]
    pub node_name: Option<String>,
}

const SOCKET_DIR: &str = "/run/ferroplane";

impl SocketArgs {
    pub fn path(&self, state: &StateDir) -> Result<PathBuf, String> {
        if let Some(path) = &self.socket {
            return Ok(path.clone());
        }
        let published = state.root().join(admin_socket::SOCKETS_DIR);
        if let Some(node) = &self.node_name {
            let record = admin_socket::published_path(state.root(), node);
            return Ok(read_published(&record)
                .unwrap_or_else(|| Path::new(SOCKET_DIR).join(format!("{node}.sock"))));
        }
        let records = entries(&published, |p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        });
        if let [one] = records.as_slice()
            && let Some(path) = read_published(one)
        {
            return Ok(path);
        }
        if records.len() > 1 {
            return Err(format!(
                "several nodes published admin sockets in {}: pass --node-name or --socket",
                published.display()
            ));
        }
        let sockets = entries(Path::new(SOCKET_DIR), |p| {
            p.extension().is_some_and(|x| x == "sock")
        });
        match sockets.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(format!(
                "no admin socket in {SOCKET_DIR} or {}: is `ferroplane run` running? (or pass \
                 --socket, or --state for a node that reads another state directory)",
                published.display()
            )),
            _ => Err(format!(
                "several admin sockets in {SOCKET_DIR}: pass --socket or --node-name"
            )),
        }
    }
}

/// The entries of `dir` that `keep` accepts (none when it cannot be read).
fn entries(dir: &Path, keep: impl Fn(&Path) -> bool) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| keep(p))
                .collect()
        })
        .unwrap_or_default()
}

/// The socket path a node published in `record`.
fn read_published(record: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(record).ok()?;
    let path = text.trim_end_matches('\n');
    (!path.is_empty()).then(|| PathBuf::from(path))
}

/// Sends `GET target` and returns the body reader once the server answered 200.
pub fn get(socket: &Path, target: &str) -> Result<impl Read + use<>, String> {
    let fail = |e: std::io::Error| format!("admin socket {}: {e}", socket.display());
    let mut stream = UnixStream::connect(socket).map_err(fail)?;
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: ferroplane\r\nConnection: close\r\n\r\n"
    )
    .map_err(fail)?;
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).map_err(fail)?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("admin socket {}: not an HTTP answer", socket.display()))?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).map_err(fail)? == 0 || header.trim().is_empty() {
            break;
        }
    }
    if status != 200 {
        let mut message = String::new();
        let _ = reader.read_to_string(&mut message);
        return Err(format!("{target}: {status}: {}", message.trim()));
    }
    Ok(reader)
}

/// `GET target`, whole body as text.
pub fn get_text(socket: &Path, target: &str) -> Result<String, String> {
    let mut body = String::new();
    get(socket, target)?
        .read_to_string(&mut body)
        .map_err(|e| format!("{target}: {e}"))?;
    Ok(body)
}
